"""Triton Python-backend model ``user_encoder``: the production twin of ``serving.user_model``.

This file is copied as ``<repo>/user_encoder/<N>/model.py`` by ``models.export_user_triton``; it
must run inside the stock ``tritonserver`` image, whose Python backend has numpy but no
torch. So the scores come from the TorchScript network served next to it by the libtorch
backend (``user_encoder_net``, same version ``N``) through a BLS call, and only the
string <-> index mapping and the top-N selection run here, in numpy, through the same
:func:`models.top_n.recommend` that ``serving.user_model.UserModel`` calls:

    history BYTES [L] (track ids, most recent last; "" = padding)
      -> track_ids BYTES [<=top_n], scores FP32 [<=top_n], version BYTES [1]

``top_n.py`` is copied next to this file at export, and imported relatively: Triton imports
a backend as ``<version>.model``, so ``.top_n`` is the copy in the same version folder, and
in this repository it is ``models.top_n``. Unit tests call ``recommend`` with the TorchScript
model as ``score_fn`` and compare with ``UserModel`` on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Relative on purpose: the same line finds the copy beside model.py inside tritonserver.
from .top_n import recommend


class TritonPythonModel:
    """The Python-backend entry points (``initialize``, ``execute``)."""

    def initialize(self, args: dict[str, Any]) -> None:
        folder = Path(args["model_repository"]) / args["model_version"]
        self.version_number = int(args["model_version"])
        self.vocab: list[str] = [str(t) for t in json.loads((folder / "vocab.json").read_text())]
        self.card: dict[str, Any] = json.loads((folder / "card.json").read_text())
        self.index = {t: j + 1 for j, t in enumerate(self.vocab)}
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        self.top_n = int(params.get("top_n", {}).get("string_value", "100"))
        self.net = params.get("net_model", {}).get("string_value", "user_encoder_net")

    def _scores(self, seq: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        import triton_python_backend_utils as pb_utils  # only inside tritonserver

        request = pb_utils.InferenceRequest(
            model_name=self.net,
            model_version=self.version_number,
            requested_output_names=["scores"],
            inputs=[pb_utils.Tensor("seq", seq)],
        )
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(response.error().message())
        out = pb_utils.get_output_tensor_by_name(response, "scores")
        return np.asarray(out.as_numpy(), dtype=np.float32)[0]

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for req in requests:
            raw = pb_utils.get_input_tensor_by_name(req, "history").as_numpy().reshape(-1)
            history = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
            ids, scores = recommend(
                history,
                index=self.index,
                vocab=self.vocab,
                length=int(self.card["L"]),
                top_n=self.top_n,
                score_fn=self._scores,
            )
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("track_ids", np.array(ids, dtype=np.object_)),
                        pb_utils.Tensor("scores", scores.astype(np.float32)),
                        pb_utils.Tensor(
                            "version", np.array([self.card["version"]], dtype=np.object_)
                        ),
                    ]
                )
            )
        return responses
