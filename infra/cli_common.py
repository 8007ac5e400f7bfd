"""What every `resonate` command module shares: log set-up and settings from the command line.

Its own module so that `infra.cli` (the app and the small commands) and the command groups
it registers (`infra.cli_models`, `infra.cli_measure`) can all use it without importing
each other.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.settings import Settings
from serving.redact import install_log_redaction


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
