"""Service-level objectives: the thresholds the alert rules and ``resonate status`` use.

``infra/prod/prometheus/alerts.yml`` states the same numbers in PromQL; a unit test
(tests/unit/test_alerts.py) keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slo:
    """A latency objective on one histogram: ``quantile`` of it stays at or under ``max_s``."""

    name: str
    histogram: str
    quantile: float
    max_s: float
    alert: str


EVENT_TO_RECOMMENDATION = Slo(
    name="event -> recommendation",
    histogram="resonate_event_to_recommendation_seconds",
    quantile=0.99,
    max_s=1.0,
    alert="ResonateEventToRecommendationP99OverSLO",
)
UPLOAD_TO_SEARCHABLE = Slo(
    name="upload -> searchable",
    histogram="resonate_upload_to_searchable_seconds",
    quantile=0.95,
    max_s=10.0,
    alert="ResonateUploadToSearchableP95OverSLO",
)
SLOS = (EVENT_TO_RECOMMENDATION, UPLOAD_TO_SEARCHABLE)
