"""streamwreck.deploy.stacks against the templates it deploys: the parameters it wires are the templates' own (a
renamed parameter would otherwise fail only at deploy time), and every image it pushes has a repository and a
Dockerfile stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamwreck.deploy import iac, stacks

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stack", stacks.STACKS)
def test_wired_parameters_exist_and_required_ones_are_wired(stack: str) -> None:
    plan = stacks.Plan("acme", "orders", "abc123", {})
    parameters = iac.load_template(stacks.CFN / f"{stack}.yaml").get("Parameters", {})
    wired = plan.parameters(stack)
    assert set(wired) <= set(parameters), f"{stack}: {set(wired) - set(parameters)} are not template parameters"
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    assert required <= set(wired)
    for name, value in wired.items():
        if name.endswith("Stack"):
            assert value == f"acme-{name.removesuffix('Stack').lower()}"


def test_every_image_has_a_repository_output_and_a_dockerfile_stage() -> None:
    outputs = iac.load_template(stacks.CFN / "registry.yaml")["Outputs"]
    for image, (dockerfile, target) in stacks.IMAGES.items():
        assert f"{image.capitalize()}RepositoryUri" in outputs
        stages = iac.parse_dockerfile(ROOT / dockerfile)
        if target:
            assert target in {stage.name for stage in stages}, f"{dockerfile} has no stage {target}"
