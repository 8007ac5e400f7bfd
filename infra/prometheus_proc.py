"""A real Prometheus server (Debian's ``/usr/bin/prometheus``) scraping the embedded stack.

:class:`PrometheusServer` writes a config with static targets (the workers' and Triton's
metrics endpoints) and the production alert rules (``infra/prod/prometheus/alerts.yml``),
then runs Prometheus on loopback with its data in a temporary folder, as a
:class:`~infra.procs.ChildProcess`. :class:`PrometheusAPI` is a small client of its HTTP
API (instant queries, rules, targets) with timeouts and its own exception type.

Install Prometheus with ``bash infra/system_packages.sh`` (Debian ``prometheus`` 2.42).
"""

from __future__ import annotations

import json
import logging
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from infra.procs import ChildProcess, StartupError, free_port

log = logging.getLogger(__name__)

ALERT_RULES = Path(__file__).resolve().parent / "prod" / "prometheus" / "alerts.yml"


class PrometheusError(RuntimeError):
    """The Prometheus HTTP API failed or answered with an error."""


class PrometheusAPI:
    """Client of Prometheus' HTTP API (``/api/v1``)."""

    def __init__(self, *, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v1/{path}{query}", timeout=self.timeout_s
            ) as resp:
                body = json.loads(resp.read().decode())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PrometheusError(f"GET {path} on {self.url} failed: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"GET {path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list (vector samples with ``metric`` and ``value``)."""
        data = self._get("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        """The value of a one-sample instant query (None when it returns nothing)."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def alerting_rules(self) -> dict[str, dict[str, Any]]:
        """Alerting rules by name, with ``state`` (inactive/pending/firing) and ``health``."""
        data = self._get("rules", type="alert")
        return {r["name"]: r for g in data["groups"] for r in g["rules"]}

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with ``health`` (up/down/unknown) and ``scrapePool``."""
        data = self._get("targets", state="active")
        active: list[dict[str, Any]] = data["activeTargets"]
        return active

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout_s) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _hostport(url: str) -> tuple[str, str]:
    """("host:port", "/path") of a metrics URL."""
    parts = urllib.parse.urlsplit(url)
    return parts.netloc, parts.path or "/metrics"


class PrometheusServer(ChildProcess):
    """Prometheus on ``host:port`` scraping ``jobs`` ({job: [metrics URLs]}); a context manager."""

    name = "Prometheus"

    def __init__(
        self,
        *,
        jobs: dict[str, list[str]],
        data_dir: Path,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        scrape_interval_s: float = 1.0,
        rule_files: tuple[Path, ...] = (ALERT_RULES,),
        binary: str = "prometheus",
        startup_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.jobs = jobs
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port or free_port(host)
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = rule_files
        self.binary = binary

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def api(self, *, timeout_s: float = 5.0) -> PrometheusAPI:
        return PrometheusAPI(url=self.url, timeout_s=timeout_s)

    def config(self) -> dict[str, Any]:
        """The prometheus.yml written for this run."""
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        scrape_configs = []
        for job, urls in self.jobs.items():
            paths = {_hostport(u)[1] for u in urls}
            if len(paths) != 1:
                raise ValueError(f"job {job}: one metrics path per job, got {paths}")
            scrape_configs.append(
                {
                    "job_name": job,
                    "metrics_path": paths.pop(),
                    "static_configs": [{"targets": [_hostport(u)[0] for u in urls]}],
                }
            )
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": scrape_configs,
        }

    def start(self) -> PrometheusServer:
        binary = shutil.which(self.binary)
        if binary is None:
            raise StartupError(
                f"{self.binary} not found: run `bash infra/system_packages.sh` (Debian prometheus)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log.info("starting Prometheus on %s (config %s)", self.url, config)
        self._launch(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                f"--web.listen-address={self.host}:{self.port}",
                "--log.level=warn",
            ],
            new_session=True,
        )
        api = self.api(timeout_s=2.0)
        self._await_ready(api.ready, what=f"Prometheus on {self.url}")
        return self
