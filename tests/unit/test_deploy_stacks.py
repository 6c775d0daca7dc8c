"""deploy/stacks.py's pure parts: parameter overrides, stack selection, and the wiring of the stacks' parameters
against the templates' own Parameters (a renamed parameter would otherwise fail only at deploy time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamwreck.deploy import iac, stacks

ROOT = Path(__file__).resolve().parents[2]


def test_overrides_are_stack_dot_key_equals_value() -> None:
    assert stacks.parse_overrides(["messaging.ShardCount=4", "services.SkipEvery=0", "messaging.A=b=c"]) == {
        "messaging": {"ShardCount": "4", "A": "b=c"},
        "services": {"SkipEvery": "0"},
    }
    for bad in ("ShardCount=4", "nowhere.X=1", "messaging.X", "messaging.=1"):
        with pytest.raises(stacks.DeployError, match="--param"):
            stacks.parse_overrides([bad])


def test_only_keeps_the_deploy_order() -> None:
    assert stacks.select(None) == list(stacks.STACKS)
    assert stacks.select("services, network") == ["network", "services"]
    with pytest.raises(stacks.DeployError, match="unknown stack 'db'"):
        stacks.select("network,db")


@pytest.mark.parametrize("stack", stacks.STACKS)
def test_wired_parameters_exist_and_required_ones_are_wired(stack: str) -> None:
    plan = stacks.Plan("acme", "orders", "abc123", {})
    parameters = iac.load_template(ROOT / "cfn" / f"{stack}.yaml").get("Parameters", {})
    wired = plan.parameters(stack)
    assert set(wired) <= set(parameters), f"{stack}: {set(wired) - set(parameters)} are not template parameters"
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    assert required <= set(wired)
    for name, value in wired.items():
        if name.endswith("Stack"):
            assert value == f"acme-{name.removesuffix('Stack').lower()}"


def test_user_overrides_win_and_the_image_tag_reaches_the_services() -> None:
    plan = stacks.Plan("acme", "orders", "abc123", {"services": {"ApplicationName": "mine"}})
    assert plan.parameters("services")["ApplicationName"] == "mine"
    assert plan.parameters("services")["ImageTag"] == "abc123"
    assert plan.parameters("messaging") == {"StreamName": "orders"}


def test_every_image_has_a_repository_output_and_a_dockerfile() -> None:
    outputs = iac.load_template(ROOT / "cfn" / "registry.yaml")["Outputs"]
    for image, (dockerfile, target) in stacks.IMAGES.items():
        assert f"{image.capitalize()}RepositoryUri" in outputs
        assert (ROOT / dockerfile).is_file()
        if target:
            assert f"AS {target}" in (ROOT / dockerfile).read_text()


def test_a_dirty_tree_gets_a_unique_tag() -> None:
    class Result:
        def __init__(self, stdout: str) -> None:
            self.stdout = stdout

    def clean(argv: list[str], **_: object) -> Result:
        return Result("0123456789ab\n" if "rev-parse" in argv else "")

    def dirty(argv: list[str], **_: object) -> Result:
        return Result("0123456789ab\n" if "rev-parse" in argv else " M cfn/services.yaml\n")

    assert stacks.default_image_tag(clean) == "0123456789ab"
    assert stacks.default_image_tag(dirty).startswith("0123456789ab-dirty-")
