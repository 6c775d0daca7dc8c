"""docker-compose.yml: valid against the Compose Specification's JSON schema (the copy check-jsonschema ships), and
wired as the README promises: LocalStack and memcached healthy before the services, the one-shot init before the
processor and recorder, the API on localhost:8000, the producer and checker on demand. No Docker engine needed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from streamwreck.deploy import iac

ROOT = Path(__file__).resolve().parents[2]


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [iac.linter("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return iac.load_compose()


def test_compose_file_follows_the_compose_specification() -> None:
    result = validate(iac.COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(iac.COMPOSE.read_text().replace("condition: service_healthy", "condition: healthy", 1))
    result = validate(broken)
    assert result.returncode != 0
    assert "condition" in result.stdout + result.stderr


def test_everything_starts_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    waits = {name: service.get("depends_on", {}) for name, service in services.items()}
    assert waits["init"] == {"localstack": {"condition": "service_healthy"}}
    assert waits["api"]["memcached"] == {"condition": "service_healthy"}
    for worker in ("recorder", "processor"):
        assert waits[worker]["init"] == {"condition": "service_completed_successfully"}
    assert waits["recorder"]["memcached"] == {"condition": "service_healthy"}
    assert waits["checker"]["api"] == {"condition": "service_healthy"}
    assert waits["watch"]["api"] == {"condition": "service_healthy"}
    for name in ("localstack", "memcached", "api", "recorder", "processor", "watch"):
        assert services[name]["healthcheck"]["test"], name
    # ready: memcached answers (and the ledger's history begins), not merely alive
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["watch"]["profiles"] == ["watch"]  # started on demand: docker compose --profile watch up


def test_localstack_runs_the_services_streamwreck_uses(compose: dict[str, Any]) -> None:
    localstack = compose["services"]["localstack"]
    assert set(localstack["environment"]["SERVICES"].split(",")) == {"kinesis", "sns", "sqs", "dynamodb", "cloudwatch"}
    assert ":latest" not in localstack["image"] and ":" in localstack["image"]


def test_the_api_answers_on_localhost_8000(compose: dict[str, Any]) -> None:
    assert "127.0.0.1:8000:8000" in compose["services"]["api"]["ports"]


def test_producer_and_checker_run_on_demand(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("producer", "checker"):
        assert services[name]["profiles"], name
        assert services[name]["build"]["target"] == "checker"
    assert services["producer"]["command"][0] == "produce"
    assert services["checker"]["command"][0] == "check"


def test_every_build_and_mount_points_at_a_real_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}"


def test_names_agree_between_init_services_and_checker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    init, recorder, processor = (services[n]["environment"] for n in ("init", "recorder", "processor"))
    assert init["STREAMWRECK_QUEUE_URL"] == recorder["STREAMWRECK_QUEUE_URL"]
    assert init["STREAMWRECK_TOPIC_ARN"] == processor["STREAMWRECK_TOPIC_ARN"]
    assert init["STREAMWRECK_STREAM_NAME"] == processor["STREAMWRECK_STREAM_NAME"]
    assert services["checker"]["environment"]["STREAMWRECK_STREAM_NAME"] == processor["STREAMWRECK_STREAM_NAME"]
    checker_command = services["checker"]["command"]
    assert checker_command[checker_command.index("--kcl-app") + 1] == processor["STREAMWRECK_APPLICATION_NAME"]
    assert services["checker"]["environment"]["STREAMWRECK_API_URL"] == "http://api:8000"
    memcached = services["api"]["environment"]["STREAMWRECK_MEMCACHED_SERVERS"]
    assert memcached == recorder["STREAMWRECK_MEMCACHED_SERVERS"] == "memcached:11211"
