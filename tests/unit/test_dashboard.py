"""The provisioned Grafana dashboard only queries metrics that actually exist.

Worker metric names come from ``streams.metrics.Metrics`` itself (its registry), so renaming
a metric in code without updating ``resonate.json`` fails here. Triton's own ``nv_*`` names
are listed below as scraped from the tritonserver bundled with pytriton.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from streams.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "infra" / "prod" / "grafana" / "provisioning"
DASHBOARD = PROVISIONING / "dashboards" / "resonate.json"
PROVIDER = PROVISIONING / "dashboards" / "dashboards.yml"

# Triton per-model counters (no _total suffix), from a live /metrics page of tritonserver.
TRITON_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
    }
)

# Series names a client_python collector exposes, by metric type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}

_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "atan2", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (function and label names excluded)."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def exported_series() -> dict[str, str]:
    """Series name -> metric family name, for everything a worker's Metrics exposes."""
    out: dict[str, str] = {}
    for family in Metrics().registry.collect():
        for suffix in _SUFFIXES[family.type]:
            out[family.name + suffix] = family.name
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows nest their panels
    return panels


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]


def test_extractor_on_known_shapes() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, op) (rate(a_seconds_bucket{op="x y"}'
        "[$__rate_interval]))) / 1000 / sum without (instance) (b_total offset 5m) and on(op) c"
    )
    assert promql_metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "resonate" and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert ref["type"] == "prometheus"
            assert ref["uid"] in ("${datasource}", "Prometheus"), panel["title"]
    (var,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert var["type"] == "datasource" and var["query"] == "prometheus"
    assert var["current"]["value"] == "Prometheus"  # the provisioned datasource's name


def test_every_queried_metric_is_exported(dashboard: dict[str, Any]) -> None:
    ours = exported_series()
    unknown = {}
    for title, expr in _exprs(dashboard):
        names = promql_metric_names(expr)
        assert names, f"no metric found in {title!r}: {expr}"
        bad = {n for n in names if n not in ours and n not in TRITON_METRICS}
        if bad:
            unknown[title] = sorted(bad)
    assert not unknown, f"dashboard queries metrics nobody exports: {unknown}"


def test_every_worker_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    ours = exported_series()
    used = {ours[n] for _, e in _exprs(dashboard) for n in promql_metric_names(e) if n in ours}
    assert used == set(ours.values()), f"no panel for {sorted(set(ours.values()) - used)}"


def test_provider_points_at_the_mounted_folder() -> None:
    text = PROVIDER.read_text()
    assert re.search(r"^\s*type:\s*file\s*$", text, re.M)
    (path,) = re.findall(r"^\s*path:\s*(\S+)\s*$", text, re.M)
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "./infra/prod/grafana/provisioning:/etc/grafana/provisioning" in compose
    # The provider's folder is where the compose mount puts this JSON inside the container.
    mounted = "/etc/grafana/provisioning/" + str(DASHBOARD.parent.relative_to(PROVISIONING))
    assert path == mounted
