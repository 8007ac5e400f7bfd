"""The command line: `resonate schemas` writes valid JSON Schemas producers can use."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from typer.testing import CliRunner

from infra.cli import app


def test_schemas_command_writes_one_valid_schema_per_topic(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["schemas", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "interactions.schema.json",
        "recommendations.schema.json",
        "track-uploads.schema.json",
    ]
    schema = json.loads((tmp_path / "interactions.schema.json").read_text())
    good = {
        "event_id": "e",
        "type": "play",
        "user_id": "u",
        "track_id": "t",
        "occurred_at": "2026-11-22T10:00:00Z",
    }
    jsonschema.validate(good, schema)
    try:
        jsonschema.validate({**good, "type": "pause"}, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a producer's invalid event passed the exported schema")
