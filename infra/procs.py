"""Small process helpers shared by the embedded launchers: free ports, readiness waits."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """An embedded component did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.2,
) -> None:
    """Poll ``ready`` until it is true; fail fast if ``proc`` died meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartupError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            if ready():
                return
        except Exception as exc:  # a readiness probe may raise while the service boots
            log.debug("%s not ready yet: %s", what, exc)
        time.sleep(interval_s)
    raise StartupError(f"{what} was not ready within {timeout_s:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], *, name: str, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %.0f s; killing it", name, timeout_s)
        proc.kill()
        proc.wait(timeout=5)
