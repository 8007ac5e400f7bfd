"""Run ``python -m infra.triton_server`` as a child process until the model is ready.

Why a child process: pytriton's tritonserver and python-backend stubs live as long as the
process that started them, and the stub needs an environment prepared before it starts:
nvidia-pytriton 0.7.0's stub links the system libpython 3.11.2 and crashes
(``_thread.RLock ... _recursion_count``) under pyenv's 3.11.7 unless ``LD_LIBRARY_PATH``
leads with this interpreter's ``LIBDIR``. Measured here (2 busy CPU cores): 5-7 s from
spawn to model ready (stand-in or MusiCNN), most of it pytriton copying the tritonserver tree
into its workspace and starting the python-backend stub; stopping takes about 2-3 s.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import time
from pathlib import Path

from infra.procs import ChildProcess

log = logging.getLogger(__name__)

# The folder that holds the ``infra`` package; put on PYTHONPATH so the child imports this
# checkout even when the project is not pip-installed.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def triton_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a process that starts Triton: interpreter LIBDIR first on the lib path."""
    env = dict(os.environ if base is None else base)
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    if libdir:
        old = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = f"{libdir}:{old}" if old else libdir
    old_pp = env.get("PYTHONPATH", "")
    root = str(PROJECT_ROOT)
    env["PYTHONPATH"] = f"{root}:{old_pp}" if old_pp else root
    # Unbuffered so the log tail shown on a failed start has the child's last words.
    env["PYTHONUNBUFFERED"] = "1"
    return env


class TritonProcess(ChildProcess):
    """Context manager: a pytriton server child serving the audio encoder on loopback.

    Give ``weights_path`` (converted MusiCNN) or ``factory`` (``module:function`` returning
    ``(nn.Module, EncoderCard)``, for tests). ``model_name`` is what readiness is checked
    for; it must equal the card's name. With ``user_model_dir`` the server also serves the
    user encoder ``user_model_name`` from that folder (``infra.triton_server``), and readiness
    waits for it too.
    """

    name = "Triton"

    def __init__(
        self,
        *,
        weights_path: Path | None = None,
        factory: str | None = None,
        model_name: str = "musicnn",
        host: str = "127.0.0.1",
        http_port: int,
        grpc_port: int,
        metrics_port: int,
        log_path: Path,
        max_batch: int = 32,
        startup_timeout_s: float = 180.0,
        stop_timeout_s: float = 30.0,
        user_model_dir: Path | None = None,
        user_model_name: str = "user_encoder",
        user_top_n: int = 100,
    ) -> None:
        if (weights_path is None) == (factory is None):
            raise ValueError("give exactly one of weights_path or factory")
        super().__init__(
            log_path=log_path, startup_timeout_s=startup_timeout_s, stop_timeout_s=stop_timeout_s
        )
        self.weights_path = weights_path
        self.factory = factory
        self.model_name = model_name
        self.host = host
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.max_batch = max_batch
        self.user_model_dir = user_model_dir
        self.user_model_name = user_model_name
        self.user_top_n = user_top_n
        self.startup_s: float | None = None  # measured spawn-to-ready time

    @property
    def url(self) -> str:
        """HTTP endpoint as tritonclient wants it: ``host:port``, no scheme."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """gRPC endpoint ``host:port``."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics page."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        """The child's command line."""
        cmd = [sys.executable, "-m", "infra.triton_server"]
        if self.weights_path is not None:
            cmd += ["--weights", str(self.weights_path)]
        else:
            assert self.factory is not None
            cmd += ["--factory", self.factory]
        cmd += [
            "--model-name", self.model_name,
            "--host", self.host,
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
            "--max-batch", str(self.max_batch),
        ]  # fmt: skip
        if self.user_model_dir is not None:
            cmd += [
                "--user-model-dir", str(self.user_model_dir),
                "--user-model-name", self.user_model_name,
                "--user-top-n", str(self.user_top_n),
            ]  # fmt: skip
        return cmd

    def model_names(self) -> list[str]:
        """Every model this server binds (readiness waits for all)."""
        names = [self.model_name]
        if self.user_model_dir is not None:
            names.append(self.user_model_name)
        return names

    def start(self) -> TritonProcess:
        """Spawn the server and block until the model is ready; StartupError otherwise."""
        import tritonclient.http as httpclient

        cmd = self.command()
        log.info("starting Triton: %s (log %s)", " ".join(cmd), self.log_path)
        t0 = time.monotonic()
        # Own session: a Ctrl+C in the parent's terminal must not race our stop().
        self._launch(cmd, env=triton_env(), cwd=PROJECT_ROOT, new_session=True)
        client = httpclient.InferenceServerClient(
            url=self.url, connection_timeout=2.0, network_timeout=2.0
        )
        try:
            self._await_ready(
                lambda: all(client.is_model_ready(n) for n in self.model_names()),
                what=f"Triton models {self.model_names()} at {self.url}",
                interval_s=0.5,
            )
        finally:
            client.close()
        self.startup_s = time.monotonic() - t0
        log.info("Triton ready at %s in %.1f s", self.url, self.startup_s)
        return self
