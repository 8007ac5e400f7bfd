"""The query API as a child process of the embedded stack (``resonate api``)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from infra.procs import ChildProcess
from schemas.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ApiProcess(ChildProcess):
    """``python -m infra.cli api`` with the stack's settings; ready when /health/ready is."""

    name = "query API"

    def __init__(
        self,
        *,
        settings: Settings,
        env: dict[str, str],
        log_path: Path,
        startup_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.settings = settings
        self.env = env
        self.url = f"http://{settings.host}:{settings.api_port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> Self:
        self._launch(
            [sys.executable, "-m", "infra.cli", "api"],
            env={**os.environ, **self.env},
            cwd=PROJECT_ROOT,
            new_session=True,
        )
        self._await_ready(self.ready, what=f"query API on {self.url}")
        return self
