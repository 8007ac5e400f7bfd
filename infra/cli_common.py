"""What every `resonate` command module shares: log set-up, settings from the command line,
and how the process leaves on SIGTERM.

Its own module so that `infra.cli` (the app and the small commands) and the command groups
it registers (`infra.cli_models`, `infra.cli_measure`) can all use it without importing
each other.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from schemas.settings import Settings
from serving.redact import install_log_redaction

log = logging.getLogger(__name__)


def configure_logging(verbose: bool = False) -> None:
    """Root logging for a command, with the signed-URL redaction in place first."""
    install_log_redaction()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cli_settings(**overrides: Any) -> Settings:
    """Environment (RESONATE_*) plus explicit command-line overrides."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def exit_on_sigterm() -> None:
    """Make SIGTERM leave the way Ctrl+C does: through every ``with`` and ``finally``.

    Why: Python's default SIGTERM action ends the process on the spot, so
    ``with EmbeddedStack(...)`` never exits and its children (Kafka's JVM, Milvus, Triton,
    the workers, the API; each in its own session, so the signal does not reach them)
    keep running and keep their ports. ``SystemExit`` rather than ``KeyboardInterrupt``:
    typer turns the latter into "Aborted!" and exit code 1, while 143 (128 + SIGTERM) is
    what a supervisor expects from a process it terminated. Commands that wait for a stop
    request (`up`, `demo`) install their own handler once the stack is up.
    Main thread only, as every signal handler.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Stopping the stack takes seconds; a supervisor repeating its SIGTERM meanwhile must not
    # cut that short half-way (SIGKILL still ends everything). A no-op handler rather than
    # SIG_IGN: an ignored signal stays ignored in any child spawned during the unwinding.
    signal.signal(signal.SIGTERM, _already_stopping)
    raise SystemExit(128 + signum)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    log.warning("signal %d while stopping: still stopping", signum)
