"""docker-compose.yml against the Compose Specification, and the deployment rules we keep.

No Docker engine runs here, so the file is validated with ``jsonschema`` against the
Compose Specification schema that the maintained ``check-jsonschema`` package vendors
(``builtin_schemas/vendor/compose-spec.json``, refreshed with its releases; nothing is
downloaded at run time). Interpolation (``${VAR:?message}``) stays unexpanded, as the
schema allows.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN", re.I)
ONE_SHOT = {"topics"}
STATEFUL = {"kafka", "etcd", "minio", "milvus", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    # find_spec locates the package without importing it (its CLI needs a newer click).
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None and spec.submodule_search_locations, "pip install check-jsonschema"
    package = Path(list(spec.submodule_search_locations)[0])
    schema_file = package / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors


def test_the_validator_rejects_what_compose_would(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    for mutate in (
        lambda c: c["services"]["kafka"].update(healthcheck={"test": 5}),
        lambda c: c["services"]["worker"].update(depends_on={"topics": {"condition": "done"}}),
        lambda c: c["services"]["milvus"].update(volumes_typo=[]),
    ):
        broken = copy.deepcopy(compose)
        mutate(broken)
        assert list(validator.iter_errors(broken)), "schema accepted a broken file"


def test_published_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):  # long syntax
                assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} everywhere"


def test_images_pinned_and_health_checked(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if "image" in svc:
            tag = svc["image"].rsplit(":", 1)
            assert len(tag) == 2 and tag[1] not in ("", "latest"), f"{name}: unpinned image"
        if name not in ONE_SHOT:
            assert "healthcheck" in svc, f"{name} has no health check"
    assert compose["services"]["milvus"]["image"].startswith("milvusdb/milvus:v2.6.")  # pymilvus


def test_no_default_secrets(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping, please"
        for key, value in env.items():
            if SECRET_KEY.search(key):
                refs = re.findall(r"\$\{([A-Z_]+)(:?[?-])?", str(value))
                assert refs and all(op == ":?" for _, op in refs), f"{name}.{key}: {value!r}"
            if "JAAS" in key:  # login modules only; credentials live elsewhere
                assert not re.search(r"password|user_", str(value), re.I), f"{name}.{key}"
    example = (ROOT / "infra" / "prod" / "env.example").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    listed = dict(re.findall(r"^([A-Z_]+)=(.*)$", example, re.M))
    assert required <= set(listed), required - set(listed)
    assert all(listed[k] == "" for k in required), "env.example must not carry passwords"


def test_state_on_volumes_and_start_order(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    for name in STATEFUL:
        mounts = [str(v).split(":", 1)[0] for v in compose["services"][name]["volumes"]]
        assert named & set(mounts), f"{name} keeps its data in the container"
    worker = compose["services"]["worker"]
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert compose["services"]["topics"]["command"] == ["resonate", "topics"]
    prom = compose["services"]["prometheus"]["volumes"]
    assert "./infra/prod/prometheus:/etc/prometheus:ro" in prom  # alerts.yml beside the config


def _kafka_env(compose: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}


def _listeners(value: str) -> dict[str, str]:
    """``NAME://host:port,...`` -> name -> host:port."""
    return dict(item.split("://", 1) for item in value.split(","))


def test_kafka_clients_authenticate_with_scram_over_tls(compose: dict[str, Any]) -> None:
    env = _kafka_env(compose)
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = _listeners(env["KAFKA_LISTENERS"])
    for name, address in listeners.items():
        # A listener either authenticates and encrypts, or is reachable from its own
        # container only (the broker's controller and inter-broker traffic, the health check).
        assert protocols[name] == "SASL_SSL" or address.startswith("127.0.0.1:"), name
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    published = {str(p).rsplit(":", 1)[1] for p in compose["services"]["kafka"]["ports"]}
    for port in published:
        owner = [n for n, a in listeners.items() if a.endswith(f":{port}")]
        assert owner and protocols[owner[0]] == "SASL_SSL", f"port {port} is published"
    for name in ("CLIENT", "EXTERNAL"):
        jaas = env[f"KAFKA_LISTENER_NAME_{name}_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
        assert "ScramLoginModule" in jaas
    # The image refuses SASL listeners without KAFKA_OPTS, and copies every KAFKA_* variable
    # into server.properties: the SCRAM password must come under another name.
    assert env["KAFKA_OPTS"]
    assert not [k for k, v in env.items() if k.startswith("KAFKA_") and "KAFKA_CLIENT" in v]
    assert "/etc/kafka/secrets" in " ".join(compose["services"]["kafka"]["volumes"])


def test_our_services_use_the_sasl_ssl_listener(compose: dict[str, Any]) -> None:
    from schemas.settings import Settings
    from serving.kafka_security import KafkaSecurity

    advertised = _listeners(_kafka_env(compose)["KAFKA_ADVERTISED_LISTENERS"])
    clients = [
        n
        for n, s in compose["services"].items()
        if "RESONATE_KAFKA_BOOTSTRAP" in s.get("environment", {})
    ]
    assert set(clients) == {"topics", "worker"}
    for name in clients:
        svc = compose["services"][name]
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert env["RESONATE_KAFKA_BOOTSTRAP"] == advertised["CLIENT"]
        ca = env["RESONATE_KAFKA_SSL_CAFILE"]
        assert any(str(v).endswith(f":{ca}:ro") for v in svc["volumes"]), f"{name}: CA not mounted"
        # The variables are the settings' own names: Settings reads them as SASL_SSL.
        filled = {
            k: re.sub(r"\$\{[A-Z_]+:[?-][^}]*\}", "x", v)
            for k, v in env.items()
            if k.startswith("RESONATE_KAFKA_")
        }
        security = KafkaSecurity.from_settings(
            Settings(**{k[9:].lower(): v for k, v in filled.items()})
        )
        assert (security.protocol, security.mechanism) == ("SASL_SSL", "SCRAM-SHA-512")


def test_image_build_leaves_secrets_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "run/"} <= set(ignored)  # Dockerfile COPYs the whole folder


def test_production_kafka_is_the_embedded_version(compose: dict[str, Any]) -> None:
    """One Kafka version: the compose image is the one the tests and the bench run."""
    from infra.kafka_broker import kafka_version

    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
