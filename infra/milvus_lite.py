"""The embedded vector database: Milvus Lite served over TCP like a Milvus standalone.

pymilvus' local-file mode (``MilvusClient("x.db")``) starts a private Milvus Lite per client
process on a Unix socket and locks the file, so several Faust workers could not share it.
Started on a TCP address instead, Milvus Lite is just a Milvus endpoint: every process
connects with ``MilvusClient(uri="http://127.0.0.1:PORT")`` exactly as to a production
Milvus, and only the URI changes between the two.

milvus-lite 2.5.x ships a native ``milvus`` binary (we start it the way its own
``milvus_lite/server.py`` does); milvus-lite 3.x is a pure-Python engine with a gRPC server
(``python -m milvus_lite server``). Both are supported so the benchmark can compare them;
the project pins 2.5.1.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

from infra.procs import ChildProcess, StartupError, free_port, port_open

log = logging.getLogger(__name__)

# milvus-lite 2.5.x rejects other database file names (see milvus_lite/server.py).
_DB_NAME = re.compile(r"^[a-zA-Z0-9.\-_]{1,36}$")


def milvus_lite_version() -> str:
    """Installed milvus-lite version ("" when it is not installed)."""
    try:
        return importlib.metadata.version("milvus-lite")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def milvus_lite_lib_dir() -> Path:
    """Folder holding milvus-lite 2.x's ``milvus`` binary and its shared libraries."""
    spec = importlib.util.find_spec("milvus_lite")
    if spec is None or spec.origin is None:
        raise StartupError(
            "milvus-lite is not installed; run `pip install milvus-lite==2.5.1` "
            "(or set RESONATE_MILVUS_URI to use an existing Milvus)"
        )
    return Path(spec.origin).parent / "lib"


def milvus_ready(uri: str, *, timeout_s: float = 3.0) -> bool:
    """True when a pymilvus client can connect to ``uri`` and list collections."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, timeout=timeout_s)
    try:
        client.list_collections(timeout=timeout_s)
        return True
    finally:
        client.close()


class MilvusLiteServer(ChildProcess):
    """Milvus Lite listening on ``host:port``, started on enter and stopped on exit.

    ``db_path`` is the data file (2.5.x) or data folder (3.x); its parent is created.
    ``port=0`` picks a free port. Server output goes to ``log_path``.
    """

    name = "Milvus Lite"

    def __init__(
        self,
        *,
        db_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path,
        startup_timeout_s: float = 60.0,
        log_level: str = "ERROR",
    ) -> None:
        super().__init__(log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.db_path = Path(db_path).absolute()
        self.host = host
        self.port = port or free_port(host)
        self.log_level = log_level
        self.version = milvus_lite_version()

    @property
    def uri(self) -> str:
        """``http://host:port`` for ``pymilvus.MilvusClient``."""
        return f"http://{self.host}:{self.port}"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if not self.version:
            raise StartupError("milvus-lite is not installed; run `pip install milvus-lite==2.5.1`")
        if _major(self.version) >= 3:
            args = [
                sys.executable,
                "-m",
                "milvus_lite",
                "server",
                "--data-dir",
                str(self.db_path),
                "--host",
                self.host,
                "--port",
                str(self.port),
            ]
            return args, env
        if not _DB_NAME.match(self.db_path.name):
            raise StartupError(
                f"Milvus Lite database name {self.db_path.name!r} must match "
                r"^[a-zA-Z0-9.\-_]+$ and be at most 36 characters"
            )
        lib = milvus_lite_lib_dir()
        binary = lib / "milvus"
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise StartupError(f"milvus-lite {self.version} has no executable binary at {binary}")
        # The binary links against the libraries shipped next to it (knowhere, openblas...).
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(lib), os.environ.get("LD_LIBRARY_PATH", "")) if p
        )
        args = [str(binary), str(self.db_path), f"{self.host}:{self.port}", self.log_level]
        return args, env

    def start(self) -> MilvusLiteServer:
        """Start the server and block until ``list_collections`` succeeds."""
        if port_open(self.host, self.port):
            raise StartupError(f"port {self.host}:{self.port} is already in use")
        args, env = self._command()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        log.info(
            "starting Milvus Lite %s on %s (data %s, log %s)",
            self.version,
            self.uri,
            self.db_path,
            self.log_path,
        )
        # cwd: the 2.x binary writes its side files next to the database.
        self._launch(args, env=env, cwd=self.db_path.parent)
        self._await_ready(
            lambda: port_open(self.host, self.port) and milvus_ready(self.uri),
            what=f"Milvus Lite on {self.uri}",
        )
        log.info("Milvus Lite ready on %s", self.uri)
        return self
