"""The Prometheus config and alert rules: promtool checks them and runs their unit tests
(``infra/prod/prometheus/tests``), and every metric they query exists.

promtool comes from Debian's ``prometheus`` package (``infra/system_packages.sh``, run by
``infra/setup.sh``); a missing promtool FAILS these tests instead of skipping them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.slo import SLOS
from tests.unit.test_dashboard import TRITON_METRICS, exported_series, promql_metric_names

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra" / "prod" / "prometheus"
# Series other exporters provide: Prometheus itself (`up`) and the Milvus server.
OTHER_METRICS = frozenset({"up", "milvus_proxy_req_count"})


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `bash infra/system_packages.sh` (Debian prometheus)")
    return path


def _run(*args: str) -> str:
    proc = subprocess.run(
        [promtool(), *args], cwd=PROM, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_checks_config_and_rules() -> None:
    assert "SUCCESS" in _run("check", "config", "prometheus.yml")
    out = _run("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(_rules())} rules found" in out


def test_promtool_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in _run("test", "rules", "tests/alerts_test.yml")


def test_every_alert_has_a_unit_test() -> None:
    tests = (PROM / "tests" / "alerts_test.yml").read_text()
    untested = [r["alert"] for r in _rules() if f"alertname: {r['alert']}" not in tests]
    assert not untested


def test_rules_query_only_existing_metrics() -> None:
    known = set(exported_series()) | TRITON_METRICS | OTHER_METRICS
    unknown = {
        r["alert"]: sorted(promql_metric_names(r["expr"]) - known)
        for r in _rules()
        if promql_metric_names(r["expr"]) - known
    }
    assert not unknown


def test_slo_thresholds_match_the_rules() -> None:
    rules = {r["alert"]: r["expr"] for r in _rules()}
    for slo in SLOS:
        expr = rules[slo.alert]
        assert f"histogram_quantile({slo.quantile}" in expr
        assert f"{slo.histogram}_bucket" in expr
        (threshold,) = re.findall(r"\)\s*>\s*([0-9.]+)\s*$", expr.strip())
        assert float(threshold) == slo.max_s, slo.alert
