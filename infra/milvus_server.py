"""A real Milvus standalone server for the embedded stack and CI, without Docker.

The PyPI wheel ``milvus`` (2.3.5) ships the Milvus standalone binary (LZMA-compressed, with
its shared libraries), an embedded etcd and RocksMQ, and a config template. Its own
launcher (``milvus.default_server``) changes the process' working directory while starting,
so it is not safe next to the other components the stack starts in threads; this module
reuses only its config rendering (``MilvusServerConfig``) and its binary, and runs the
binary as a :class:`~infra.procs.ChildProcess` like every other embedded component.

Compared with Milvus Lite this is the server's own code path: HNSW and scalar indexes,
``max_length`` enforcement on VARCHAR fields, time-tick based consistency levels (a
"Strong" read waits for the next tick, about 200 ms), segment sealing.

Ports: the proxy (the Milvus endpoint), /healthz + /metrics and every internal port are
picked free, and the embedded etcd gets its own client and peer ports on loopback (its
defaults, 2379/2380, would make two servers on one machine collide), so tests and stacks can
run servers side by side. Loopback: every component's advertised ``ip`` is ``host``
(127.0.0.1); the 2.3 binary still binds its gRPC listeners (proxy, coordinators, nodes) on
the wildcard address -- it has no setting for that; a production deployment restricts them
with the container network instead.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import lzma
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from infra.milvus_lite import MilvusLiteServer, milvus_ready
from infra.procs import ChildProcess, StartupError, free_port, port_open
from schemas.settings import Settings

log = logging.getLogger(__name__)

# Components whose advertised address is pinned to the loopback host.
_COMPONENTS = (
    "rootCoord",
    "proxy",
    "queryCoord",
    "queryNode",
    "indexCoord",
    "indexNode",
    "dataCoord",
    "dataNode",
)


def milvus_server_version() -> str:
    """Installed ``milvus`` wheel version ("" when it is not installed)."""
    try:
        return importlib.metadata.version("milvus")
    except importlib.metadata.PackageNotFoundError:
        return ""


def unpack_binaries(cache_dir: Path) -> Path:
    """Decompress the wheel's ``milvus`` binary and libraries into ``cache_dir`` once.

    A file is rewritten only when its compressed source changed (an MD5 next to it), so
    many servers (tests, stacks) share one unpacked copy. Returns the folder.
    """
    import milvus  # the wheel; imported here so Lite-only installs never need it

    src = Path(milvus.__file__).parent / "data" / "bin"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for packed in sorted(src.glob("*.lzma")):
        target = cache_dir / packed.name[: -len(".lzma")]
        stamp = target.with_name(target.name + ".md5")
        digest = hashlib.md5(packed.read_bytes()).hexdigest()
        if target.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
            continue
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        with lzma.open(packed) as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        tmp.chmod(0o755)
        tmp.replace(target)  # atomic: a concurrent reader sees the old or the new file
        stamp.write_text(digest)
    return cache_dir


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return b"OK" in resp.read()


class MilvusStandaloneServer(ChildProcess):
    """Milvus standalone (from the ``milvus`` wheel) on ``host:port``; a context manager.

    ``data_dir`` holds its config, logs, etcd and segment data (created; reused if it
    exists). ``bin_cache`` is where the binary is unpacked once (shared between servers).
    ``port=0`` picks a free port for the proxy (the Milvus endpoint); the other internal
    ports are picked free too. Server output goes to ``log_path``.
    """

    name = "Milvus standalone"

    def __init__(
        self,
        *,
        data_dir: Path,
        bin_cache: Path,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 120.0,
    ) -> None:
        # Milvus' graceful stop takes >10 s; its data is ephemeral here, so stop it fast.
        super().__init__(log_path=log_path, startup_timeout_s=startup_timeout_s, stop_timeout_s=3.0)
        self.data_dir = Path(data_dir).absolute()
        self.bin_cache = Path(bin_cache).absolute()
        self.host = host
        self.port = port or free_port(host)
        self.http_port = 0
        self.etcd_config = Path()
        self.version = milvus_server_version()

    @property
    def uri(self) -> str:
        """``http://host:port`` for ``pymilvus.MilvusClient``."""
        return f"http://{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Milvus' own Prometheus endpoint (``milvus_*`` series)."""
        return f"http://{self.host}:{self.http_port}/metrics"

    def _write_config(self) -> Path:
        """Render the wheel's config template into ``data_dir/configs/milvus.yaml``."""
        from milvus import MilvusServerConfig

        config = MilvusServerConfig(data_dir=str(self.data_dir), proxy_port=self.port)
        for component in _COMPONENTS:
            config.set(f"{component}.ip", self.host)
        # Our own logs go to log_path; keep Milvus' log level useful but quiet.
        config.set("log.level", "warn")
        config.resolve()  # picks free internal ports, writes configs/milvus.yaml
        conf_dir = self.data_dir / "configs"
        # The embedded etcd would listen on the fixed 2379/2380 (two servers on one machine
        # collide): give it the resolved client port and a free peer port, on loopback.
        client = f"http://{self.host}:{int(config.get('etcd_port'))}"
        peer = f"http://{self.host}:{free_port(self.host)}"
        self.etcd_config = conf_dir / "embed-etcd.yaml"
        self.etcd_config.write_text(
            "\n".join(
                [
                    "name: default",
                    f"data-dir: {self.data_dir / 'data' / 'etcd.data'}",
                    f"listen-client-urls: {client}",
                    f"advertise-client-urls: {client}",
                    f"listen-peer-urls: {peer}",
                    f"initial-advertise-peer-urls: {peer}",
                    f"initial-cluster: default={peer}",
                    "initial-cluster-state: new",
                    "",
                ]
            )
        )
        return conf_dir

    def start(self) -> MilvusStandaloneServer:
        """Start the server; block until /healthz says OK and ``list_collections`` works."""
        if not self.version:
            raise StartupError(
                "the `milvus` wheel is not installed; run `pip install milvus==2.3.5` "
                "(or use milvus_mode=lite, or set RESONATE_MILVUS_URI to a Milvus server)"
            )
        if port_open(self.host, self.port):
            raise StartupError(f"port {self.host}:{self.port} is already in use")
        bin_dir = unpack_binaries(self.bin_cache)
        conf_dir = self._write_config()
        self.http_port = free_port(self.host)
        env = dict(os.environ)
        env.update(
            {
                "DEPLOY_MODE": "STANDALONE",
                "METRICS_PORT": str(self.http_port),  # /healthz and /metrics
                "MILVUSCONF": str(conf_dir) + os.sep,
                "ETCD_CONFIG_PATH": str(self.etcd_config),  # = etcd.config.path
                "MILVUS_RUN_DIR": str(self.data_dir / "run"),
                "LD_LIBRARY_PATH": os.pathsep.join(
                    p for p in (str(bin_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p
                ),
            }
        )
        log.info(
            "starting Milvus standalone %s on %s (data %s, log %s)",
            self.version,
            self.uri,
            self.data_dir,
            self.log_path,
        )
        # cwd: the binary also looks for ./configs/milvus.yaml relative to it.
        self._launch(
            [str(bin_dir / "milvus"), "run", "standalone"],
            env=env,
            cwd=self.data_dir,
            new_session=True,
        )
        health = f"http://{self.host}:{self.http_port}/healthz"
        self._await_ready(
            lambda: _healthy(health) and milvus_ready(self.uri),
            what=f"Milvus standalone on {self.uri}",
            interval_s=0.5,
        )
        log.info("Milvus standalone ready on %s", self.uri)
        return self


def embedded_milvus(
    settings: Settings, *, run_dir: Path, log_dir: Path
) -> tuple[MilvusLiteServer | MilvusStandaloneServer, dict[str, Any]]:
    """The Milvus the embedded stack starts for ``settings.milvus_mode``, and the settings
    it implies (its index types); the data folder starts empty (see ``EmbeddedStack``)."""
    update: dict[str, Any] = {}
    if settings.milvus_mode == "server":
        server: MilvusLiteServer | MilvusStandaloneServer = MilvusStandaloneServer(
            data_dir=run_dir / "milvus-server",
            bin_cache=run_dir / "cache" / f"milvus-{milvus_server_version() or 'none'}",
            host=settings.host,
            port=settings.milvus_port,
            log_path=log_dir / "milvus.log",
        )
        if settings.milvus_index.upper() == "FLAT":  # the Lite default: a server gets HNSW
            update["milvus_index"] = "HNSW"
        update["milvus_scalar_index"] = settings.milvus_scalar_index or "STL_SORT"
        return server, update
    server = MilvusLiteServer(
        db_path=run_dir / "milvus" / "resonate.db",
        host=settings.host,
        port=settings.milvus_port,
        log_path=log_dir / "milvus.log",
    )
    update["milvus_scalar_index"] = settings.milvus_scalar_index or "INVERTED"
    return server, update
