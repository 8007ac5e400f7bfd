"""Small process helpers shared by the embedded launchers: free ports, readiness waits."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """An embedded component did not become ready in time."""


LOG_FILE_MODE = 0o600
LOG_DIR_MODE = 0o700


def open_private_log(path: Path) -> IO[bytes]:
    """Open ``path`` for appending, readable by its owner only (0600, folder 0700).

    Why: logs hold what the processes saw (addresses, errors quoting requests, library
    debug output); with the default umask they would be world-readable. An existing file
    is tightened too, since ``open``'s mode applies only when it creates the file.
    """
    path.parent.mkdir(mode=LOG_DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_FILE_MODE)
    os.fchmod(fd, LOG_FILE_MODE)
    return os.fdopen(fd, "ab")


def write_private_text(path: Path, text: str) -> None:
    """Write ``path`` (replacing it) readable by its owner only, like the logs beside it."""
    path.parent.mkdir(mode=LOG_DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, LOG_FILE_MODE)
    os.fchmod(fd, LOG_FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


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


def log_tail(path: Path, *, lines: int = 40) -> str:
    """Last lines of a log file, for error messages ("" if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Service:
    """A context manager that calls ``start()`` on enter and ``stop()`` on exit.

    A failed ``start()`` is followed by ``stop()`` (which must be idempotent), so a
    half-started service never outlives the ``with`` statement that wanted it.
    """

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ChildProcess(Service):
    """A service run as a child process: log file, readiness wait, clean stop.

    Subclasses build the command in ``start()`` and call :meth:`_launch` then
    :meth:`_await_ready`; used as a context manager it starts on enter, stops on exit.
    """

    name = "child process"

    def __init__(
        self, *, log_path: Path, startup_timeout_s: float, stop_timeout_s: float = 10.0
    ) -> None:
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def _launch(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> None:
        """Spawn ``args`` with output to the log; ``new_session`` keeps terminal signals off it."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self._log = open_private_log(self.log_path)  # closed in stop()
        self._proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd) if cwd is not None else None,
            start_new_session=new_session,
        )

    def _await_ready(
        self, ready: Callable[[], bool], *, what: str, interval_s: float = 0.3
    ) -> None:
        """Wait for ``ready``; on failure (or Ctrl+C) stop the child; raise with its log tail."""
        try:
            wait_until(
                ready,
                what=what,
                timeout_s=self.startup_timeout_s,
                proc=self._proc,
                interval_s=interval_s,
            )
        except BaseException as exc:
            self.stop()
            if isinstance(exc, StartupError):
                raise StartupError(
                    f"{exc}; log tail ({self.log_path}):\n{log_tail(self.log_path)}"
                ) from exc
            raise

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (benchmarks measure its CPU)."""
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """SIGKILL the child and what it spawned, as a crash of its host would (fault
        tests); ``start()`` brings it back on the same ports."""
        if self._proc is not None:
            try:
                # Its own session (Triton: pytriton's tritonserver and backend stubs) dies
                # with it; otherwise orphans would keep its ports.
                if os.getpgid(self._proc.pid) == self._proc.pid:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                else:
                    self._proc.kill()
            except ProcessLookupError:
                pass
            self._proc.wait(timeout=10)
        self.stop()

    def stop(self) -> None:
        """Stop the child (idempotent)."""
        if self._proc is not None:
            stop_process(self._proc, name=self.name, timeout_s=self.stop_timeout_s)
            log.info("%s stopped (exit code %s)", self.name, self._proc.returncode)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
