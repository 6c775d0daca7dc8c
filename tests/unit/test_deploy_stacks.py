"""streamwreck.deploy.stacks' pure parts: parameter overrides, stack selection, the image tag, the waits, and how
failures become one line (botocore's as AwsError, a failed command as DeployError, a bug keeps its traceback).
Against the templates: tests/iac/test_deploy_plan.py; a real deploy into moto: tests/integration/test_deploy_moto.py."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from botocore.exceptions import ClientError, NoRegionError

from streamwreck.core.errors import AwsError, ConfigError, DeployError, WaitTimeout
from streamwreck.deploy import stacks


def test_overrides_are_stack_dot_key_equals_value() -> None:
    assert stacks.parse_overrides(["messaging.ShardCount=4", "services.SkipEvery=0", "messaging.A=b=c"]) == {
        "messaging": {"ShardCount": "4", "A": "b=c"},
        "services": {"SkipEvery": "0"},
    }
    for bad in ("ShardCount=4", "nowhere.X=1", "messaging.X", "messaging.=1"):
        with pytest.raises(ConfigError, match="--param"):
            stacks.parse_overrides([bad])


def test_only_keeps_the_deploy_order() -> None:
    assert stacks.select(None) == list(stacks.STACKS)
    assert stacks.select("services, network") == ["network", "services"]
    with pytest.raises(ConfigError, match="unknown stack 'db'"):
        stacks.select("network,db")


def test_user_overrides_win_and_the_image_tag_reaches_the_services() -> None:
    plan = stacks.Plan("acme", "orders", "abc123", {"services": {"ApplicationName": "mine"}})
    assert plan.parameters("services")["ApplicationName"] == "mine"
    assert plan.parameters("services")["ImageTag"] == "abc123"
    assert plan.parameters("messaging") == {"StreamName": "orders"}


class Result:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout


def test_a_dirty_tree_gets_a_unique_tag() -> None:
    def clean(argv: list[str], **_: object) -> Result:
        return Result("0123456789ab\n" if "rev-parse" in argv else "")

    def dirty(argv: list[str], **_: object) -> Result:
        return Result("0123456789ab\n" if "rev-parse" in argv else " M cfn/services.yaml\n")

    assert stacks.default_image_tag(clean) == "0123456789ab"
    assert stacks.default_image_tag(dirty).startswith("0123456789ab-dirty-")


def test_a_failed_command_is_one_deploy_error() -> None:
    def failing(argv: list[str], **_: object) -> Result:
        raise subprocess.CalledProcessError(128, argv)

    def missing(argv: list[str], **_: object) -> Result:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    with pytest.raises(DeployError, match=r"git rev-parse: .*exit status 128"):
        stacks.default_image_tag(failing)
    with pytest.raises(DeployError, match=r"docker push: .*No such file"):
        stacks.command(missing, ["docker", "push", "x"])


class Stacks:
    """A CloudFormation client whose describe_stacks walks through the given statuses (None: no such stack)."""

    def __init__(self, *statuses: str | None) -> None:
        self.statuses = list(statuses)

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status is None:
            error = {"Error": {"Code": "ValidationError", "Message": f"Stack with id {StackName} does not exist"}}
            raise ClientError(error, "DescribeStacks")  # type: ignore[arg-type]
        return {"Stacks": [{"StackStatus": status}]}


def test_the_wait_ends_with_the_stack_operation() -> None:
    assert stacks.wait_for(Stacks("CREATE_IN_PROGRESS", "CREATE_COMPLETE"), "s", 0.001, 5) == "CREATE_COMPLETE"
    assert stacks.wait_for(Stacks("DELETE_IN_PROGRESS", None), "s", 0.001, 5, gone_ok=True) == "GONE"
    with pytest.raises(DeployError, match="stack s disappeared"):
        stacks.wait_for(Stacks("UPDATE_IN_PROGRESS", None), "s", 0.001, 5)
    with pytest.raises(WaitTimeout, match="stack s to finish its operation"):
        stacks.wait_for(Stacks("UPDATE_IN_PROGRESS"), "s", 0.001, 0.01)


def test_botocore_errors_become_one_aws_error_line_and_nothing_else_does() -> None:
    doing = "deploying acme-network"
    with pytest.raises(AwsError, match=rf"no AWS region .*{doing}") as caught, stacks.aws(doing):
        raise NoRegionError()
    assert isinstance(caught.value.__cause__, NoRegionError)
    with pytest.raises(KeyError), stacks.aws(doing):
        raise KeyError("a bug is not an AWS error")


def test_main_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert stacks.main(["--only", "db", "outputs"]) == 2
    assert (
        capsys.readouterr().err
        == f"outputs: error: --only: unknown stack 'db'; the stacks are {', '.join(stacks.STACKS)}\n"
    )
