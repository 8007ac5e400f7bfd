"""The embedded stack: Apache Kafka, Milvus Lite, Triton (pytriton) and Faust workers on loopback.

Every component here is the real thing, started as a child process; anything
whose address is already set in the settings (a production Kafka, Triton or
Milvus) is used as it is instead. The addresses in use are written to
``<run_dir>/stack.json`` so producers, tests and the demo can find them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from infra.kafka_broker import embedded_kafka
from infra.milvus_server import embedded_milvus
from infra.procs import (
    LOG_DIR_MODE,
    Service,
    StartupError,
    free_port,
    log_tail,
    open_private_log,
    stop_process,
    wait_until,
    write_private_text,
)
from infra.triton_proc import TritonProcess
from schemas.settings import Settings
from serving.kafka_security import KafkaSecurity
from serving.kafka_topics import ensure_topics
from streams.fetch import endpoints_from

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as RESONATE_* variables, to hand them to a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:  # unset optional: leave the variable out (its default is None)
            continue
        if isinstance(value, SecretStr):  # the child needs the secret itself, not '*****'
            value = value.get_secret_value()
        if isinstance(value, list | tuple):
            env[f"RESONATE_{name.upper()}"] = json.dumps([str(v) for v in value])
        else:
            env[f"RESONATE_{name.upper()}"] = str(value)
    return env


def ensure_weights(path: Path) -> Path:
    """Convert MusiCNN's TensorFlow checkpoint (from the musicnn wheel) once."""
    if not path.is_file():
        from models.convert_musicnn import convert

        log.info("converting MusiCNN weights to %s", path)
        convert(path)
    return path


@dataclass
class WorkerProc:
    """A Faust worker child process and where it reports."""

    index: int
    metrics_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=2) as resp:
            return str(resp.read().decode())

    def is_ready(self) -> bool:
        return "resonate_worker_ready 1.0" in self.metrics_text()


class EmbeddedStack(Service):
    """Start what the settings leave empty, then the workers; stop all on exit."""

    def __init__(self, *, settings: Settings, startup_timeout_s: float = 240.0) -> None:
        self.base = settings
        self.startup_timeout_s = startup_timeout_s
        self.run_dir = settings.run_dir.resolve()
        self.log_dir = self.run_dir / "logs"
        self.settings = settings  # resolved addresses once started
        self.workers: list[WorkerProc] = []
        self.triton_metrics_url = ""
        self.components: dict[str, Any] = {}  # name -> started child (kafka, milvus, triton)
        self.ready_s: dict[str, float] = {}  # component or "stack" -> seconds to ready
        self.api_url = ""  # set once the query API is up (api_enabled)
        self._metrics_ports: dict[int, int] = {}  # worker index -> its metrics port
        self._stack = ExitStack()

    # --- lifecycle (Service makes it a context manager) ------------------------------

    def start(self) -> None:
        s = self.base
        self.log_dir.mkdir(mode=LOG_DIR_MODE, parents=True, exist_ok=True)
        weights = ensure_weights(s.weights_path.resolve())
        t0 = time.monotonic()
        starters: dict[str, Any] = {}
        if not s.kafka_bootstrap:
            starters["kafka"] = embedded_kafka(s, run_dir=self.run_dir, log_dir=self.log_dir)
        if not s.milvus_uri:
            # Ephemeral like the embedded broker (formatted afresh): vectors left over from
            # an earlier run would outlive the catalog and user state that Kafka forgot.
            shutil.rmtree(self.run_dir / "milvus", ignore_errors=True)
            shutil.rmtree(self.run_dir / "milvus-server", ignore_errors=True)
            starters["milvus"], milvus_update = embedded_milvus(
                s, run_dir=self.run_dir, log_dir=self.log_dir
            )
        if not s.triton_url:
            starters["triton"] = TritonProcess(
                weights_path=weights,
                model_name=s.triton_model,
                host=s.host,
                http_port=s.triton_http_port or free_port(s.host),
                grpc_port=s.triton_grpc_port or free_port(s.host),
                metrics_port=s.triton_metrics_port or free_port(s.host),
                log_path=self.log_dir / "triton.log",
                user_model_dir=s.user_model_dir.resolve() if s.user_model_dir else None,
                user_model_name=s.user_model_name,
                user_top_n=s.user_model_top_n,
            )
        self.components = dict(starters)
        # The three start independently; Triton's model load dominates, so overlap them.
        with ThreadPoolExecutor(max(1, len(starters))) as pool:
            futures = {
                name: pool.submit(self._stack.enter_context, c) for name, c in starters.items()
            }
            for name, fut in futures.items():
                fut.result()
                self.ready_s[name] = round(time.monotonic() - t0, 2)
                log.info("%s ready in %.1f s", name, self.ready_s[name])
        update: dict[str, Any] = {}
        if "kafka" in starters:
            update["kafka_bootstrap"] = starters["kafka"].bootstrap
        if "milvus" in starters:
            update["milvus_uri"] = starters["milvus"].uri
            update.update(milvus_update)
        if "triton" in starters:
            update["triton_url"] = starters["triton"].url
            self.triton_metrics_url = starters["triton"].metrics_url
        update.update(self._own_endpoints(s, starters, update))
        self.settings = s.model_copy(update=update)
        r = self.settings
        ensure_topics(
            r.kafka_bootstrap,
            r.stack_topics(),
            partitions=r.partitions,
            timeout_s=r.timeout_s,
            security=KafkaSecurity.from_settings(r),
        )
        for i in range(r.workers):
            self.start_worker(i)
        # The API's start-up (imports, Milvus/Triton/Kafka connections) overlaps the workers'.
        with ThreadPoolExecutor(1) as pool:
            api = pool.submit(self.start_api) if r.api_enabled else None
            self.wait_workers_ready()
            if api is not None:
                api.result()
        self.write_state()
        self.ready_s["stack"] = round(time.monotonic() - t0, 2)
        log.info("embedded stack up in %.1f s", self.ready_s["stack"])

    def _own_endpoints(
        self, s: Settings, starters: dict[str, Any], update: dict[str, Any]
    ) -> dict[str, Any]:
        """Fix every port the stack serves before a worker starts, and deny them all to
        upload fetching (``audio_denied_endpoints``), so an allowed host or a redirect can
        never make a worker call Kafka, Triton, Milvus, the metrics or the API."""
        host = s.host
        own = [*s.audio_denied_endpoints]
        for key in ("kafka_bootstrap", "triton_url", "milvus_uri"):
            value = str(update.get(key) or getattr(s, key))
            own += [str(e) for e in endpoints_from(value) if e.port]
        if "triton" in starters:
            t = starters["triton"]
            own += [f"{host}:{p}" for p in (t.http_port, t.grpc_port, t.metrics_port)]
        if "milvus" in starters and getattr(starters["milvus"], "http_port", None):
            own.append(f"{host}:{starters['milvus'].http_port}")  # /healthz and /metrics
        for i in range(s.workers):
            self._metrics_ports[i] = s.metrics_port + i if s.metrics_port else free_port()
            own.append(f"{host}:{self._metrics_ports[i]}")
        out: dict[str, Any] = {}
        if s.api_enabled:
            out["api_port"] = s.api_port or free_port(host)
            own.append(f"{host}:{out['api_port']}")
        out["audio_denied_endpoints"] = list(dict.fromkeys(own))
        return out

    def stop(self) -> None:
        for w in self.workers:
            self.stop_worker(w.index)
        self._stack.close()
        state = self.run_dir / "stack.json"
        state.unlink(missing_ok=True)

    # --- workers ---------------------------------------------------------------------

    def start_worker(self, index: int) -> WorkerProc:
        """Start (or restart) worker ``index`` as a child process."""
        existing = next((w for w in self.workers if w.index == index), None)
        port = (
            existing.metrics_port
            if existing
            else self._metrics_ports.get(index)
            or (self.settings.metrics_port + index if self.settings.metrics_port else free_port())
        )
        w = existing or WorkerProc(
            index=index, metrics_port=port, log_path=self.log_dir / f"worker-{index}.log"
        )
        env = {
            **os.environ,
            **settings_env(self.settings.model_copy(update={"metrics_port": port})),
        }
        w._log = open_private_log(w.log_path)
        w.proc = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "worker"],
            stdout=w._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        if existing is None:
            self.workers.append(w)
        return w

    def stop_worker(self, index: int, *, kill: bool = False) -> None:
        """Stop worker ``index``: SIGTERM (graceful) or SIGKILL (a crash)."""
        w = self.workers[index]
        if w.proc is not None:
            if kill:
                w.proc.kill()
                w.proc.wait(timeout=10)
            else:
                stop_process(w.proc, name=f"worker-{index}", timeout_s=20)
            w.proc = None
        if w._log is not None:
            w._log.close()
            w._log = None

    def wait_workers_ready(self, timeout_s: float | None = None) -> None:
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                wait_until(
                    w.is_ready,
                    what=f"worker-{w.index}",
                    timeout_s=timeout_s or self.startup_timeout_s,
                    proc=w.proc,
                    interval_s=0.5,
                )
            except StartupError as exc:
                tail = log_tail(w.log_path)
                raise StartupError(f"{exc}\n--- {w.log_path} (tail) ---\n{tail}") from exc

    def pids(self) -> dict[str, int]:
        """Process id of every running child: components and workers (benchmarks)."""
        out = {n: c.pid for n, c in self.components.items() if getattr(c, "pid", None)}
        out.update({f"worker-{w.index}": w.proc.pid for w in self.workers if w.proc})
        return out

    def start_api(self) -> None:
        """The query API and inspector page, on ``api_port`` (0: a free one)."""
        from infra.api_proc import ApiProcess

        r = self.settings.model_copy(
            update={
                "api_port": self.settings.api_port or free_port(self.settings.host),
                "worker_metrics_urls": [w.metrics_url for w in self.workers],
            }
        )
        api = ApiProcess(settings=r, env=settings_env(r), log_path=self.log_dir / "api.log")
        self._stack.enter_context(api)
        self.api_url = api.url
        log.info("query API on %s (inspector %s/inspector)", api.url, api.url)

    # --- state file ------------------------------------------------------------------

    def write_state(self) -> Path:
        r = self.settings
        state = {
            "kafka_bootstrap": r.kafka_bootstrap,
            "triton_url": r.triton_url,
            "triton_metrics_url": self.triton_metrics_url,
            "milvus_uri": r.milvus_uri,
            "topic_prefix": r.topic_prefix,
            "topics": {
                "interactions": r.topic(r.interactions_topic),
                "uploads": r.topic(r.uploads_topic),
                "recommendations": r.topic(r.recommendations_topic),
            },
            "worker_metrics": [w.metrics_url for w in self.workers],
            "api_url": self.api_url,
            "pid": os.getpid(),
        }
        path = self.run_dir / "stack.json"
        write_private_text(path, json.dumps(state, indent=2))
        return path


def read_state(run_dir: Path) -> dict[str, Any]:
    """The addresses a running `resonate up` wrote."""
    path = run_dir / "stack.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is `resonate up` running?")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
