"""Every STREAMWRECK_* variable a service's code reads is set for it, in docker-compose.yml and in its ECS task
definition (cfn/services.yaml); nothing sets a variable no code reads (a typo would silently do nothing).

Which variables a service reads is found in its code (deploy/iac.py): ``settings.<field>``,
``settings.require("<field>")`` and properties of Settings, over the service's modules and the project modules
they import, plus STREAMWRECK_* names read from the environment directly (the checker's STREAMWRECK_API_URL).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamwreck.deploy import iac

ROOT = Path(__file__).resolve().parents[2]


# Left unset on purpose, with the reason. Anything else a service reads must be set.
LEFT_UNSET = {
    "STREAMWRECK_WORKER_ID": "unset, each worker names itself after its host (unique per container and per task)",
    "STREAMWRECK_PROCESS_FUNCTION": "unset means the shipped demo rule; set it to plug in your own function",
}
# service -> (compose service, task definition in cfn/services.yaml, Dockerfile, build target)
WHERE = {
    "api": ("api", "ApiTask", "api", "api"),
    "recorder": ("recorder", "RecorderTask", "recorder", None),
    "processor": ("processor", "ProcessorTask", "processor", None),
    "checker": ("checker", "CheckerTask", "api", "checker"),
}


def image_env(service: str) -> set[str]:
    _, _, dockerfile, target = WHERE[service]
    return set(iac.stage_environment(iac.parse_dockerfile(iac.DOCKERFILES[dockerfile]), target))


def compose_env(service: str) -> set[str]:
    environment = iac.load_compose()["services"][WHERE[service][0]].get("environment", {})
    return set(environment)


def ecs_env(service: str) -> set[str]:
    template = iac.load_template(ROOT / "cfn" / "services.yaml")
    return set(iac.container_environment(template, WHERE[service][1]))


@pytest.fixture(scope="module", params=sorted(WHERE))
def service(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_the_analysis_finds_what_each_service_is_known_to_read(service: str) -> None:
    known = {
        "api": {"STREAMWRECK_MEMCACHED_SERVERS", "STREAMWRECK_API_PORT", "STREAMWRECK_API_KEY"},
        "recorder": {"STREAMWRECK_QUEUE_URL", "STREAMWRECK_MEMCACHED_SERVERS", "STREAMWRECK_LEDGER_TTL_SECONDS"},
        "processor": {"STREAMWRECK_STREAM_NAME", "STREAMWRECK_TOPIC_ARN", "STREAMWRECK_APPLICATION_NAME"},
        "checker": {"STREAMWRECK_API_URL", "STREAMWRECK_STREAM_NAME"},
    }
    assert known[service] <= iac.variables_read(service)


def test_the_analysis_keeps_services_apart() -> None:
    # The api and the recorder share cli/services.py, which imports both; neither reads the other's settings.
    assert "STREAMWRECK_QUEUE_URL" not in iac.variables_read("api")
    assert "STREAMWRECK_API_PORT" not in iac.variables_read("recorder")


def test_the_analysis_reads_properties_and_require(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        "def f(settings, os):\n"
        "    settings.require('queue_url')\n"
        "    servers = settings.servers\n"
        "    self_settings = settings\n"
        "    return self_settings.api_port, os.environ.get('STREAMWRECK_SOMETHING'), other.region\n"
    )
    fields, env = iac.settings_read({module})
    assert fields == {"queue_url", "memcached_servers", "api_port"}  # `other.region` is not a settings object
    assert env == {"STREAMWRECK_SOMETHING"}


def test_every_variable_read_is_set_in_compose(service: str) -> None:
    missing = iac.variables_read(service) - set(LEFT_UNSET) - compose_env(service) - image_env(service)
    assert not missing, f"docker-compose.yml does not set {sorted(missing)} for {service}"


def test_every_variable_read_is_set_in_the_task_definition(service: str) -> None:
    missing = iac.variables_read(service) - set(LEFT_UNSET) - ecs_env(service) - image_env(service)
    assert not missing, f"cfn/services.yaml's {WHERE[service][1]} does not set {sorted(missing)}"


def test_nothing_sets_a_variable_that_no_code_reads(service: str) -> None:
    read = iac.variables_read(service)
    for where, names in (("docker-compose.yml", compose_env(service)), ("cfn/services.yaml", ecs_env(service))):
        ours = {name for name in names if name.startswith(iac.ENV_PREFIX)}
        assert ours <= read, f"{where} sets {sorted(ours - read)} for {service}, which its code never reads"


def test_what_is_left_unset_is_read_and_has_a_default() -> None:
    from streamwreck.core.settings import Settings

    read_anywhere = set().union(*(iac.variables_read(service) for service in WHERE))
    for name, reason in LEFT_UNSET.items():
        assert name in read_anywhere and reason
        field = Settings.model_fields[name.removeprefix(iac.ENV_PREFIX).lower()]
        assert not field.is_required()
