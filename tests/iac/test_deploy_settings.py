"""Each deployable gets the STREAMWRECK_* variables its settings class asks for (streamwreck.core.settings.SETTINGS_OF),
in docker-compose.yml and in its ECS task definition (cfn/services.yaml), its image's ENV counted in both:
- every required variable (a field without a default) is set, or the service stops at start-up;
- nothing sets a STREAMWRECK_* variable that is not a field of that class (a typo would silently do nothing);
- what is left unset has a default, and the two places leave the same fields to their defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pydantic.fields import FieldInfo

from streamwreck.core.settings import SETTINGS_OF
from streamwreck.deploy import iac

DEPLOYED = sorted(iac.TASK_DEFINITIONS)  # the deployables that run in compose and on ECS
# compose's one-shot init is no deployable: it creates the resources the processor and the recorder are told about.
INIT_FEEDS = ("processor", "recorder")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return iac.load_compose()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return iac.load_template(iac.SERVICES_TEMPLATE)


def in_compose(service: str, compose: dict[str, Any], template: dict[str, Any]) -> set[str]:
    return iac.compose_variables(service, compose) | iac.image_variables(service)


def on_ecs(service: str, compose: dict[str, Any], template: dict[str, Any]) -> set[str]:
    return iac.task_variables(service, template) | iac.image_variables(service)


PLACES: dict[str, Callable[[str, dict[str, Any], dict[str, Any]], set[str]]] = {
    "docker-compose.yml": in_compose,
    "cfn/services.yaml": on_ecs,
}


def test_every_deployable_runs_in_both_places(compose: dict[str, Any], template: dict[str, Any]) -> None:
    assert set(DEPLOYED) == set(SETTINGS_OF) - {"local"}  # `local` is the embedded stack: no container of its own
    for service in DEPLOYED:
        assert service in compose["services"], service
        assert template["Resources"][iac.TASK_DEFINITIONS[service]]["Type"] == "AWS::ECS::TaskDefinition"


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("service", DEPLOYED)
def test_the_wiring_matches_the_settings_class(
    service: str, place: str, compose: dict[str, Any], template: dict[str, Any]
) -> None:
    problems = iac.wiring_problems(service, PLACES[place](service, compose, template))
    assert not problems, f"{place}: " + "; ".join(problems)


def left_unset(service: str, compose: dict[str, Any], template: dict[str, Any]) -> dict[str, dict[str, FieldInfo]]:
    """place -> the deployable's variables it leaves to their defaults."""
    return {place: iac.left_unset(service, given(service, compose, template)) for place, given in PLACES.items()}


@pytest.mark.parametrize("service", DEPLOYED)
def test_what_is_left_unset_has_a_default_and_is_the_same_in_both_places(
    service: str, compose: dict[str, Any], template: dict[str, Any]
) -> None:
    unset = left_unset(service, compose, template)
    for place, fields in unset.items():
        required = [name for name, info in fields.items() if info.is_required()]
        assert not required, f"{place} leaves {required} unset for {service}: they have no default"
    compose_unset, ecs_unset = (set(fields) for fields in unset.values())
    assert compose_unset == ecs_unset, f"only one of the two sets {sorted(compose_unset ^ ecs_unset)} for {service}"


def test_only_deployables_and_the_init_are_given_streamwreck_variables(compose: dict[str, Any]) -> None:
    from streamwreck.core.settings import InitSettings, variable

    given = {name for name in compose["services"] if iac.compose_variables(name, compose)}
    assert given <= {*DEPLOYED, "init"}
    assert iac.compose_variables("init", compose) <= {variable(field) for field in InitSettings.model_fields}
    # what the init names its resources by is what the processor and the recorder are told
    shared = {variable(field) for field in ("stream_name", "topic_arn", "queue_url")}
    known = set().union(*(iac.settings_variables(service) for service in INIT_FEEDS))
    assert shared <= known


# --- the checks catch a wrong wiring --------------------------------------------------------------------------------


def test_a_required_variable_left_out_is_named() -> None:
    assert iac.wiring_problems("recorder", {"STREAMWRECK_MEMCACHED_SERVERS"}) == [
        "STREAMWRECK_QUEUE_URL is required by recorder (RecorderSettings) but not set"
    ]
    problems = iac.wiring_problems("processor", set())
    assert {problem.split()[0] for problem in problems} == {
        "STREAMWRECK_STREAM_NAME",
        "STREAMWRECK_APPLICATION_NAME",
        "STREAMWRECK_TOPIC_ARN",
    }


def test_a_variable_of_another_deployable_is_named() -> None:
    assert iac.wiring_problems("api", {"STREAMWRECK_QUEUE_URL", "AWS_REGION"}) == [
        "STREAMWRECK_QUEUE_URL is not a setting of api (ApiSettings): it does nothing"
    ]


def test_a_misspelt_variable_in_compose_is_caught(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    environment = broken["services"]["recorder"]["environment"]
    environment["STREAMWRECK_QUEUE_ULR"] = environment.pop("STREAMWRECK_QUEUE_URL")
    assert iac.wiring_problems("recorder", iac.compose_variables("recorder", broken)) == [
        "STREAMWRECK_QUEUE_URL is required by recorder (RecorderSettings) but not set",
        "STREAMWRECK_QUEUE_ULR is not a setting of recorder (RecorderSettings): it does nothing",
    ]


def test_compose_in_list_form_is_read_too(compose: dict[str, Any]) -> None:
    listed = copy.deepcopy(compose)
    checker = listed["services"]["checker"]
    checker["environment"] = [f"{name}={value}" for name, value in checker["environment"].items()]
    assert iac.compose_variables("checker", listed) == iac.compose_variables("checker", compose)
    checker["environment"].append("STREAMWRECK_STREAM=orders")
    assert iac.unknown("checker", iac.compose_variables("checker", listed)) == {"STREAMWRECK_STREAM"}


def test_a_variable_only_one_side_of_an_fn_if_sets_counts(template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    container = broken["Resources"]["CheckerTask"]["Properties"]["ContainerDefinitions"][0]
    entry = {"Name": "STREAMWRECK_QUEUE_URL", "Value": "x"}
    container["Environment"].append({"Fn::If": ["SomeCondition", entry, {"Ref": "AWS::NoValue"}]})
    assert iac.wiring_problems("checker", on_ecs("checker", {}, broken)) == [
        "STREAMWRECK_QUEUE_URL is not a setting of checker (CheckerSettings): it does nothing"
    ]


def test_a_default_left_to_one_place_only_is_a_disagreement(compose: dict[str, Any], template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    container = broken["Resources"]["ApiTask"]["Properties"]["ContainerDefinitions"][0]
    container["Environment"] = [e for e in container["Environment"] if e["Name"] != "STREAMWRECK_LOG_LEVEL"]
    assert not iac.wiring_problems("api", on_ecs("api", compose, broken))  # it has a default: the API starts
    unset = left_unset("api", compose, broken)
    assert set(unset["cfn/services.yaml"]) - set(unset["docker-compose.yml"]) == {"STREAMWRECK_LOG_LEVEL"}
