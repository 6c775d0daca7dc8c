"""The daemon's properties file and launch plan: built from settings and an explicit environment, no I/O; the
settings the plan starts from, and the jar and Java lookup."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from streamwreck.core.errors import ConfigError
from streamwreck.core.settings import ProcessorSettings, load_settings
from streamwreck.processor.daemon import daemon_argv, plan_daemon
from streamwreck.processor.jars import find_jars, find_java
from streamwreck.processor.properties import (
    LOCAL_PROFILE,
    MAIN_CLASS,
    Endpoints,
    build_properties,
    logback_xml,
    parse_property,
    render,
    resolve_region,
)

REQUIRED = {
    "stream_name": "orders",
    "application_name": "orders-consumer",
    "topic_arn": "arn:aws:sns:us-east-1:123456789012:processed",
}


def _load_java_properties(text: str) -> dict[str, str]:
    """A reader for the subset of java.util.Properties syntax that render() writes, to check the round trip."""
    result = {}
    for line in io.StringIO(text):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        key, value = _split(line)
        result[_unescape(key)] = _unescape(value)
    return result


def _split(line: str) -> tuple[str, str]:
    index = 0
    while index < len(line):
        if line[index] == "\\":
            index += 2
            continue
        if line[index] in " =:":
            break
        index += 1
    rest = line[index:].lstrip(" ")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" ")
    return line[:index], rest


def _unescape(text: str) -> str:
    units: list[int] = []  # UTF-16 code units, as Java strings hold them
    index = 0
    while index < len(text):
        char = text[index]
        if char != "\\":
            units.append(ord(char))
            index += 1
        elif text[index + 1] == "u":
            units.append(int(text[index + 2 : index + 6], 16))
            index += 6
        else:
            units.append(ord({"n": "\n", "r": "\r", "t": "\t", "f": "\f"}.get(text[index + 1], text[index + 1])))
            index += 2
    return b"".join(unit.to_bytes(2, "big") for unit in units).decode("utf-16-be")


def test_production_properties_have_no_endpoints_and_no_local_profile() -> None:
    settings = load_settings(ProcessorSettings, **REQUIRED)
    properties = build_properties(
        settings, executable="/usr/bin/python3 -m x", region="eu-west-1", worker_id="w-1", endpoints=Endpoints()
    )
    assert properties["streamName"] == "orders"
    assert properties["applicationName"] == "orders-consumer"
    assert properties["regionName"] == "eu-west-1"
    assert properties["initialPositionInStream"] == "TRIM_HORIZON"
    assert properties["retrievalMode"] == "POLLING"
    assert properties["metricsLevel"] == "NONE"
    assert properties["callProcessRecordsEvenForEmptyRecordList"] == "true"
    assert int(properties["shutdownGraceMillis"]) >= 10_000  # SIGTERM: publish and checkpoint before leaving
    assert "kinesisEndpoint" not in properties and "dynamoDBEndpoint" not in properties
    assert "disableWorkerMetrics" not in properties


def test_endpoints_come_from_the_standard_aws_variables() -> None:
    assert Endpoints.from_env({"AWS_ENDPOINT_URL": "http://moto"}) == Endpoints("http://moto", "http://moto")
    env = {"AWS_ENDPOINT_URL": "http://moto", "AWS_ENDPOINT_URL_KINESIS": "http://kinesis-local"}
    assert Endpoints.from_env(env) == Endpoints("http://kinesis-local", "http://moto")
    assert Endpoints.from_env({"AWS_ENDPOINT_URL_DYNAMODB": "http://d"}) == Endpoints(None, "http://d")
    assert Endpoints.from_env({}) == Endpoints(None, None)


def test_endpoint_overrides_alone_keep_the_production_profile() -> None:
    # VPC or FIPS endpoints in AWS: the daemon must keep its worker metrics (KCL 3's lease balancing) and the
    # instance-profile credentials (EC2/ECS metadata).
    settings = load_settings(ProcessorSettings, **REQUIRED)
    endpoints = Endpoints(
        "https://vpce-1.kinesis.eu-west-1.vpce.amazonaws.com", "https://dynamodb-fips.eu-west-1.amazonaws.com"
    )
    properties = build_properties(
        settings, executable="py -m x", region="eu-west-1", worker_id="w", endpoints=endpoints
    )
    assert properties["kinesisEndpoint"] == endpoints.kinesis
    assert not LOCAL_PROFILE.keys() & properties.keys()
    env = {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_KINESIS": str(endpoints.kinesis)}
    assert "AWS_EC2_METADATA_DISABLED" not in plan_daemon(settings, env, {}).env


def test_the_local_profile_setting_brings_the_local_profile_and_extras_override() -> None:
    settings = load_settings(ProcessorSettings, **REQUIRED, initial_position="LATEST", local_profile=True)
    properties = build_properties(
        settings,
        executable="py -m x",
        region="us-east-1",
        worker_id="w",
        endpoints=Endpoints("http://127.0.0.1:1", "http://127.0.0.1:2"),
        extra={"maxRecords": "100", "idleTimeBetweenReadsInMillis": "250"},
    )
    assert properties["kinesisEndpoint"] == "http://127.0.0.1:1"
    assert properties["dynamoDBEndpoint"] == "http://127.0.0.1:2"
    assert properties["disableWorkerMetrics"] == "true"
    assert properties["initialPositionInStream"] == "LATEST"
    assert properties["maxRecords"] == "100"
    assert properties["idleTimeBetweenReadsInMillis"] == "250"
    assert {k: v for k, v in LOCAL_PROFILE.items() if k != "idleTimeBetweenReadsInMillis"}.items() <= properties.items()


def test_render_round_trips_through_java_properties_syntax() -> None:
    properties = {
        "executableName": "/opt/py/bin/python -m streamwreck.processor.record_processor",
        "kinesisEndpoint": "http://127.0.0.1:4567",
        "odd key=with:seps": " leading space, back\\slash, tab\t, é, 🙂",
    }
    text = render(properties)
    assert text.isascii()
    assert _load_java_properties(text) == properties


@pytest.mark.parametrize("text", ["novalue", "=x", "two words=x"])
def test_parse_property_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_property(text)


def test_parse_property() -> None:
    assert parse_property(" maxRecords = 1000 ") == ("maxRecords", "1000")
    assert parse_property("x=a=b") == ("x", "a=b")


def test_region_comes_from_settings_then_the_environment() -> None:
    settings = load_settings(ProcessorSettings, **REQUIRED)
    in_settings = load_settings(ProcessorSettings, **REQUIRED, region="eu-central-1")
    assert resolve_region(in_settings, {"AWS_REGION": "x"}) == "eu-central-1"
    assert resolve_region(settings, {"AWS_DEFAULT_REGION": "ap-south-1"}) == "ap-south-1"
    with pytest.raises(ConfigError, match="STREAMWRECK_REGION"):
        resolve_region(settings, {})


def test_the_local_profile_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWRECK_LOCAL_PROFILE", "true")
    assert load_settings(ProcessorSettings, **REQUIRED).local_profile is True
    monkeypatch.setenv("STREAMWRECK_LOCAL_PROFILE", "false")
    assert load_settings(ProcessorSettings, **REQUIRED).local_profile is False
    monkeypatch.delenv("STREAMWRECK_LOCAL_PROFILE")
    assert load_settings(ProcessorSettings, **REQUIRED).local_profile is False


@pytest.mark.parametrize("missing", ["stream_name", "application_name", "topic_arn"])
def test_a_missing_required_setting_is_named_when_the_settings_load(
    missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for field, value in REQUIRED.items():
        if field != missing:
            monkeypatch.setenv(f"STREAMWRECK_{field.upper()}", value)
    with pytest.raises(ConfigError, match=f"^STREAMWRECK_{missing.upper()} is required but not set$"):
        load_settings(ProcessorSettings)
    with pytest.raises(ConfigError, match=f"^STREAMWRECK_{missing.upper()}: "):  # set, but empty
        load_settings(ProcessorSettings, **{missing: ""})


def test_plan_passes_the_settings_to_every_record_processor() -> None:
    settings = load_settings(ProcessorSettings, **REQUIRED, skip_every=5, worker_id="worker-a", local_profile=True)
    env = {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    plan = plan_daemon(settings, env, {}, python="/venv/bin/python")
    assert plan.properties["executableName"] == "/venv/bin/python -m streamwreck.processor.record_processor"
    assert plan.properties["workerId"] == "worker-a"
    assert plan.env["STREAMWRECK_STREAM_NAME"] == "orders"
    assert plan.env["STREAMWRECK_TOPIC_ARN"] == REQUIRED["topic_arn"]
    assert plan.env["STREAMWRECK_SKIP_EVERY"] == "5"
    assert plan.env["STREAMWRECK_WORKER_ID"] == "worker-a"
    assert plan.env["STREAMWRECK_REGION"] == "us-east-1"
    assert plan.env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert "STREAMWRECK_PROCESS_FUNCTION" not in plan.env
    assert "PYTHONPATH" not in plan.env


def test_plan_puts_the_working_directory_first_on_the_record_processors_path() -> None:
    settings = load_settings(ProcessorSettings, **REQUIRED)
    env = {"AWS_REGION": "us-east-1", "PYTHONPATH": "/opt/lib"}
    assert plan_daemon(settings, env, {}, cwd="/srv/app").env["PYTHONPATH"] == "/srv/app:/opt/lib"
    assert plan_daemon(settings, {"AWS_REGION": "us-east-1"}, {}, cwd="/srv/app").env["PYTHONPATH"] == "/srv/app"


def test_plan_makes_a_unique_worker_id_when_none_is_set() -> None:
    settings = load_settings(ProcessorSettings, **REQUIRED)
    env = {"AWS_REGION": "us-east-1"}
    first, second = (plan_daemon(settings, env, {}).properties["workerId"] for _ in range(2))
    assert first != second
    assert plan_daemon(settings, env, {}).env.get("AWS_EC2_METADATA_DISABLED") is None


def test_a_record_processor_loads_its_settings_from_the_plan_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # the options (--stream, --application, ...) reach the record processors only through the plan's environment
    settings = load_settings(ProcessorSettings, **REQUIRED, skip_every=7, process_function="os.path:basename")
    for name, value in plan_daemon(settings, {"AWS_REGION": "eu-west-1"}, {}).env.items():
        monkeypatch.setenv(name, value)
    child = load_settings(ProcessorSettings)
    assert {field: getattr(child, field) for field in REQUIRED} == REQUIRED
    assert (child.region, child.skip_every, child.process_function) == ("eu-west-1", 7, "os.path:basename")
    assert child.worker_id is not None


def test_plan_hands_the_metrics_folder_to_the_record_processors_only_with_a_metrics_port(tmp_path: Path) -> None:
    env = {"AWS_REGION": "us-east-1"}
    settings = load_settings(ProcessorSettings, **REQUIRED, processor_metrics_port=9109)
    plan = plan_daemon(settings, env, {}, metrics_dir=tmp_path)
    assert plan.env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)  # prometheus_client's multiprocess mode
    assert plan.env["STREAMWRECK_PROCESSOR_METRICS_PORT"] == "9109"  # what switches the record processors' on
    without = plan_daemon(load_settings(ProcessorSettings, **REQUIRED), env, {}, metrics_dir=None)
    assert not {"PROMETHEUS_MULTIPROC_DIR", "STREAMWRECK_PROCESSOR_METRICS_PORT"} & set(without.env)


def test_the_metrics_settings_and_the_help_that_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamwreck.processor.daemon import describe

    settings = load_settings(ProcessorSettings, **REQUIRED)
    assert (settings.processor_metrics_port, settings.processor_metrics_host) == (None, "127.0.0.1")
    monkeypatch.setenv("STREAMWRECK_PROCESSOR_METRICS_PORT", "70000")
    with pytest.raises(ConfigError, match=r"^STREAMWRECK_PROCESSOR_METRICS_PORT: "):
        load_settings(ProcessorSettings, **REQUIRED)
    assert "STREAMWRECK_PROCESSOR_METRICS_PORT" in describe("processor")
    assert "STREAMWRECK_PROCESSOR_METRICS_HOST" in describe("processor")


def test_plan_rejects_a_bad_process_function_before_starting_java() -> None:
    settings = load_settings(ProcessorSettings, **REQUIRED, process_function="streamwreck_no_such_module:f")
    with pytest.raises(ConfigError, match="cannot import"):
        plan_daemon(settings, {"AWS_REGION": "us-east-1"}, {})


def test_plan_rejects_a_python_path_with_spaces() -> None:
    with pytest.raises(ConfigError, match="spaces"):
        plan_daemon(
            load_settings(ProcessorSettings, **REQUIRED), {"AWS_REGION": "us-east-1"}, {}, python="/my venv/bin/python"
        )


def test_find_jars(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STREAMWRECK_KCL_JARS_DIR"):
        find_jars(str(tmp_path))
    (tmp_path / "amazon-kinesis-client-multilang-3.1.3.jar").write_bytes(b"")
    assert find_jars(str(tmp_path)) == tmp_path.resolve()
    assert any(find_jars(None).glob("amazon-kinesis-client-multilang-*.jar"))  # build/kcl-jars or amazon_kclpy's


def test_find_java_takes_java_home_then_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = tmp_path / "home" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_bytes(b"")
    java.chmod(0o755)
    assert find_java(str(tmp_path / "home")) == str(java)
    monkeypatch.setenv("PATH", str(java.parent))
    assert find_java(str(tmp_path / "no-java-here")) == str(java)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="Java is not installed"):
        find_java(None)


def test_daemon_argv() -> None:
    argv = daemon_argv("/usr/bin/java", Path("/jars"), Path("/tmp/p.properties"), Path("/tmp/logback.xml"))
    assert argv == [
        "/usr/bin/java",
        "-cp",
        "/jars/*",
        MAIN_CLASS,
        "--properties-file",
        "/tmp/p.properties",
        "--log-configuration",
        "/tmp/logback.xml",
    ]


@pytest.mark.parametrize(("ours", "logback"), [("DEBUG", "INFO"), ("INFO", "INFO"), ("WARNING", "WARN")])
def test_logback_configuration(ours: str, logback: str) -> None:
    root = ElementTree.fromstring(logback_xml(ours))
    assert root.find("root").get("level") == logback  # type: ignore[union-attr]
    assert root.find("appender/target").text == "System.err"  # type: ignore[union-attr]
    relay = [e for e in root.iter("logger") if e.get("name", "").endswith("DrainChildSTDERRTask")]
    assert [e.get("level") for e in relay] == ["OFF"]


@pytest.fixture
def keep_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command configures the root logger (onto this test's captured stderr) and puts the working directory on
    sys.path: put both back afterwards."""
    monkeypatch.setattr(sys, "path", [*sys.path])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("keep_logging")
def test_the_command_names_a_missing_setting_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from streamwreck.cli.main import main

    assert main(["processor", "--stream", "s"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err
        == "streamwreck processor: configuration error: STREAMWRECK_APPLICATION_NAME is required but not set\n"
    )


@pytest.mark.usefixtures("keep_logging")
def test_print_properties_writes_only_the_file_to_stdout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamwreck.cli.main import main

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("STREAMWRECK_LOCAL_PROFILE", "true")
    args = ["processor", "--stream", "orders", "--application", "app", "--topic-arn", REQUIRED["topic_arn"]]
    assert main([*args, "--worker-id", "w", "--property", "maxRecords=50", "--print-properties"]) == 0
    properties = _load_java_properties(capsys.readouterr().out)
    assert properties["workerId"] == "w"
    assert properties["maxRecords"] == "50"
    assert properties["dynamoDBEndpoint"] == "http://127.0.0.1:5000"
    assert properties["disableWorkerMetrics"] == "true"
