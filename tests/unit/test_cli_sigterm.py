"""A SIGTERM'd `resonate` command stops the children it started instead of orphaning them.

No real stack: a tiny script goes through the real entry point (``infra.cli.main``) with
the app swapped for a body that holds a ``sleep 600`` child started the way the stack
starts its components (``infra.procs.ChildProcess``, its own session, so the SIGTERM sent
to the parent never reaches it). Only the parent's unwinding can stop it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os
import signal
import sys
import threading
from pathlib import Path

import infra.cli as cli
from infra.procs import ChildProcess


class Sleeper(ChildProcess):
    name = "sleeper"

    def start(self):
        self._launch(["sleep", "600"], new_session=True)
        return self

    def stop(self):
        if sys.argv[2] == "again":  # a supervisor repeating its SIGTERM during the stop
            os.kill(os.getpid(), signal.SIGTERM)
        super().stop()


def body():
    with Sleeper(log_path=Path(sys.argv[1]), startup_timeout_s=5) as child:
        print(child.pid, flush=True)
        threading.Event().wait()  # as `bench` waits on its stack: only a signal ends it


cli.app = body
cli.main()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("again", ["once", "again"])
def test_sigterm_unwinds_and_stops_the_child(tmp_path: Path, again: str) -> None:
    script = tmp_path / "cmd.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (tmp_path / "stderr.txt").open("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "sleeper.log"), again],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            env=env,
        )
        child = 0
        try:
            # Event-driven: the script prints the child's pid once it runs (bounded wait).
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            line = proc.stdout.readline() if ready else b""
            err.seek(0)
            assert line.strip().isdigit(), f"no child pid; stderr:\n{err.read()}"
            child = int(line)
            assert _alive(child)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
            err.seek(0)
            assert code == 128 + signal.SIGTERM, err.read()
            # Stopped and reaped by its parent on the way out; an orphan would still run.
            assert not _alive(child)
        finally:
            if child and _alive(child):
                os.kill(child, signal.SIGKILL)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
