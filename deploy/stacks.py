"""Deploy streamwreck to AWS with CloudFormation: the stacks of cfn/ in order, the images in between.

  python -m streamwreck.deploy.stacks deploy  [--prefix streamwreck] [--only STACK,...] [--param STACK.Key=Value ...]
  python -m streamwreck.deploy.stacks outputs [--prefix streamwreck]
  python -m streamwreck.deploy.stacks check   [--prefix streamwreck]   run the checker once on Fargate, print its report
  python -m streamwreck.deploy.stacks destroy [--prefix streamwreck] [--only STACK,...]

Stacks (each named <prefix>-<stack>, deployed in this order, destroyed in the reverse one):
  network    VPC, subnets, NAT gateway, the tasks' security group, the logs' KMS key
  ledger     ElastiCache memcached, open only to the tasks
  messaging  Kinesis stream, SNS topic, SQS queue + dead-letter queue, raw-delivery subscription
  registry   ECR repositories; then the images are built and pushed (docker) under --image-tag
  services   ECS cluster, Fargate services, load balancer, autoscaling, logs; exports the API endpoint

Credentials and region are boto3's (AWS_PROFILE, AWS_DEFAULT_REGION, ...); AWS_ENDPOINT_URL points it at an emulator.
`destroy` also deletes the KCL application's DynamoDB tables, which KCL (not CloudFormation) created.
botocore's errors become one AwsError line at the step that met them, a failed docker or git command one DeployError
line; both exit 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from streamwreck.core.aws import AWS_ERRORS, error_code, session, translate
from streamwreck.core.clock import wait_until
from streamwreck.core.errors import ConfigError, DeployError, StreamwreckError

ROOT = Path(__file__).resolve().parent.parent
CFN = ROOT / "cfn"
STACKS = ("network", "ledger", "messaging", "registry", "services")
# image -> (Dockerfile, build target); each deployable's image is named after its `streamwreck` command
IMAGES = {
    "api": ("services/api/Dockerfile", "api"),
    "checker": ("services/api/Dockerfile", "checker"),
    "processor": ("services/processor/Dockerfile", None),
    "recorder": ("services/recorder/Dockerfile", None),
    "watch": ("services/processor/Dockerfile", "watch"),
}
KCL_TABLE_SUFFIXES = ("", "-CoordinatorState", "-WorkerMetricStats")


def stack_name(prefix: str, stack: str) -> str:
    return f"{prefix}-{stack}"


@dataclass(frozen=True)
class Plan:
    prefix: str
    stream: str
    image_tag: str
    overrides: Mapping[str, Mapping[str, str]]

    def stack_name(self, stack: str) -> str:
        return stack_name(self.prefix, stack)

    def parameters(self, stack: str) -> dict[str, str]:
        """The parameters a stack gets: the names of the stacks it imports from, then the user's overrides."""
        wired: dict[str, dict[str, str]] = {
            "network": {},
            "ledger": {"NetworkStack": self.stack_name("network")},
            "messaging": {"StreamName": self.stream},
            "registry": {"RepositoryPrefix": self.prefix},
            "services": {
                "NetworkStack": self.stack_name("network"),
                "LedgerStack": self.stack_name("ledger"),
                "MessagingStack": self.stack_name("messaging"),
                "RegistryStack": self.stack_name("registry"),
                "ImageTag": self.image_tag,
                "ApplicationName": f"{self.stream}-consumer",
            },
        }
        return {**wired[stack], **self.overrides.get(stack, {})}


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["messaging.ShardCount=4", ...]`` -> ``{"messaging": {"ShardCount": "4"}}``."""
    overrides: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stack, dot, name = key.partition(".")
        if not sep or not dot or not name or stack not in STACKS:
            raise ConfigError(f"--param {item!r}: expected STACK.Key=Value with STACK one of {', '.join(STACKS)}")
        overrides.setdefault(stack, {})[name] = value
    return overrides


def select(only: str | None) -> list[str]:
    if not only:
        return list(STACKS)
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in STACKS]
    if unknown:
        raise ConfigError(f"--only: unknown stack {unknown[0]!r}; the stacks are {', '.join(STACKS)}")
    return [name for name in STACKS if name in chosen]


# --- CloudFormation -------------------------------------------------------------------------------------------------


@contextmanager
def aws(doing: str) -> Iterator[None]:
    """botocore's exceptions raised while ``doing`` something, as one AwsError line (the CLI's translation)."""
    try:
        yield
    except AWS_ERRORS as exc:
        raise translate(exc, doing) from exc


def stack_status(cfn: Any, name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def outputs_of(cfn: Any, name: str) -> dict[str, str]:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def wait_for(cfn: Any, name: str, poll: float, timeout: float, gone_ok: bool = False) -> str:
    """Poll until the stack leaves its *_IN_PROGRESS state; return the final status ("GONE" once deleted)."""

    def settled() -> str | None:
        status = stack_status(cfn, name)
        if status is None:
            if gone_ok:
                return "GONE"
            raise DeployError(f"stack {name} disappeared")
        return None if status.endswith("_IN_PROGRESS") else status

    return wait_until(settled, timeout, f"stack {name} to finish its operation", interval=poll)


def failure_reasons(cfn: Any, name: str, limit: int = 5) -> str:
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', e['ResourceStatus'])}"
        for e in events
        if e["ResourceStatus"].endswith("_FAILED")
    ]
    return "; ".join(reasons[:limit]) or "no failed resource reported"


def deploy_stack(
    cfn: Any, name: str, template: Path, parameters: Mapping[str, str], poll: float = 5.0, timeout: float = 3600.0
) -> dict[str, str]:
    """Create the stack or update it (no change is fine); return its outputs."""
    request: dict[str, Any] = {
        "StackName": name,
        "TemplateBody": template.read_text(),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": "streamwreck:stack", "Value": name}],
    }
    status = stack_status(cfn, name)
    if status == "ROLLBACK_COMPLETE":  # a failed first create cannot be updated: start again
        cfn.delete_stack(StackName=name)
        wait_for(cfn, name, poll, timeout, gone_ok=True)
        status = None
    if status is None:
        print(f"deploy: creating {name}", file=sys.stderr)
        cfn.create_stack(**request, OnFailure="ROLLBACK")
        expected = "CREATE_COMPLETE"
    else:
        print(f"deploy: updating {name}", file=sys.stderr)
        try:
            cfn.update_stack(**request)
        except ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise
            return outputs_of(cfn, name)
        expected = "UPDATE_COMPLETE"
    final = wait_for(cfn, name, poll, timeout)
    if final != expected:
        raise DeployError(f"stack {name} ended {final}: {failure_reasons(cfn, name)}")
    return outputs_of(cfn, name)


def delete_stack(cfn: Any, name: str, poll: float = 5.0, timeout: float = 3600.0) -> None:
    if stack_status(cfn, name) is None:
        print(f"destroy: {name} does not exist", file=sys.stderr)
        return
    print(f"destroy: deleting {name}", file=sys.stderr)
    cfn.delete_stack(StackName=name)
    final = wait_for(cfn, name, poll, timeout, gone_ok=True)
    if final not in {"GONE", "DELETE_COMPLETE"}:
        raise DeployError(f"stack {name} ended {final}: {failure_reasons(cfn, name)}")


def delete_kcl_tables(dynamodb: Any, application: str) -> None:
    for suffix in KCL_TABLE_SUFFIXES:
        table = f"{application}{suffix}"
        try:
            dynamodb.delete_table(TableName=table)
            print(f"destroy: deleted the KCL table {table}", file=sys.stderr)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise


# --- images ---------------------------------------------------------------------------------------------------------


def command(run: Callable[..., Any], argv: Sequence[str], **options: Any) -> Any:
    """``run(argv, check=True, ...)``; a command that fails or cannot start is one DeployError line."""
    try:
        return run(list(argv), check=True, **options)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise DeployError(f"{' '.join(argv[:2])}: {exc}") from exc


def default_image_tag(run: Callable[..., Any] = subprocess.run) -> str:
    """The commit; a dirty tree gets a timestamp too, since the repositories' tags are immutable.

    (Not an ISO time: a Docker tag admits no ':'.)"""
    git = {"cwd": ROOT, "capture_output": True, "text": True}
    tag = str(command(run, ["git", "rev-parse", "--short=12", "HEAD"], **git).stdout).strip()
    if str(command(run, ["git", "status", "--porcelain"], **git).stdout).strip():
        tag += time.strftime("-dirty-%Y%m%d%H%M%S", time.gmtime())
    return tag


def push_images(ecr: Any, registry_outputs: Mapping[str, str], tag: str, run: Callable[..., Any]) -> None:
    with aws("getting an ECR login"):
        auth = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
    registry = auth["proxyEndpoint"].removeprefix("https://")
    command(run, ["docker", "login", "--username", user, "--password-stdin", registry], input=password, text=True)
    for image, (dockerfile, target) in IMAGES.items():
        uri = f"{registry_outputs[f'{image.capitalize()}RepositoryUri']}:{tag}"
        print(f"deploy: building and pushing {uri}", file=sys.stderr)
        build = ["docker", "build", "-f", dockerfile, "-t", uri]
        build += ["--target", target] if target else []
        command(run, [*build, "."], cwd=ROOT)
        command(run, ["docker", "push", uri])


# --- commands -------------------------------------------------------------------------------------------------------


def cmd_deploy(args: argparse.Namespace, session: Any) -> int:
    overrides, stacks = parse_overrides(args.param), select(args.only)
    image_tag = args.image_tag or default_image_tag()
    plan = Plan(args.prefix, args.stream or args.prefix, image_tag, overrides)
    cfn = session.client("cloudformation")
    for stack in stacks:
        name = plan.stack_name(stack)
        with aws(f"deploying {name}"):
            outputs = deploy_stack(cfn, name, CFN / f"{stack}.yaml", plan.parameters(stack), args.poll, args.timeout)
        if stack == "registry" and not args.skip_images:
            push_images(session.client("ecr"), outputs, image_tag, subprocess.run)
        if stack == "services" and "ApiEndpoint" in outputs:
            print(f"deploy: the API is at {outputs['ApiEndpoint']} (docs at /docs)", file=sys.stderr)
    return 0


def cmd_outputs(args: argparse.Namespace, session: Any) -> int:
    chosen = select(args.only)
    cfn = session.client("cloudformation")
    report = {}
    for stack in chosen:
        name = stack_name(args.prefix, stack)
        with aws(f"reading the outputs of {name}"):
            if stack_status(cfn, name) is not None:
                report[stack] = outputs_of(cfn, name)
    print(json.dumps(report, indent=2))
    return 0


def cmd_destroy(args: argparse.Namespace, session: Any) -> int:
    chosen = select(args.only)
    cfn = session.client("cloudformation")
    for stack in reversed(chosen):
        name = stack_name(args.prefix, stack)
        with aws(f"deleting {name}"):
            applications: list[str] = []  # the consumer's and the watcher's KCL tables are the KCL's, not the stack's
            if stack == "services" and stack_status(cfn, name) is not None:
                outputs = outputs_of(cfn, name)
                applications = [outputs[key] for key in ("ApplicationName", "WatcherApplicationName") if key in outputs]
            delete_stack(cfn, name, args.poll, args.timeout)
            for application in applications:
                delete_kcl_tables(session.client("dynamodb"), application)
    return 0


def cmd_check(args: argparse.Namespace, session: Any) -> int:
    """Run the checker task once in the private subnets; print its log; exit with its exit code."""
    with aws("running the checker task"):
        cfn = session.client("cloudformation")
        network = outputs_of(cfn, stack_name(args.prefix, "network"))
        services = outputs_of(cfn, stack_name(args.prefix, "services"))
        cluster = services["ClusterName"]
        ecs = session.client("ecs")
        task = ecs.run_task(
            cluster=cluster,
            taskDefinition=services["CheckerTaskDefinition"],
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": network["PrivateSubnets"].split(","),
                    "securityGroups": [network["ServiceSecurityGroup"]],
                    "assignPublicIp": "DISABLED",
                }
            },
        )["tasks"][0]
        arn = task["taskArn"]
        print(f"check: running {arn}", file=sys.stderr)

        def stopped() -> dict[str, Any] | None:
            current: dict[str, Any] = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
            return current if current["lastStatus"] == "STOPPED" else None

        task = wait_until(stopped, args.timeout, f"the checker task {arn} to stop", interval=args.poll)
        stream = f"checker/checker/{arn.rsplit('/', 1)[-1]}"
        logs = session.client("logs")
        events = logs.get_log_events(logGroupName=services["CheckerLogGroup"], logStreamName=stream, startFromHead=True)
    for event in events["events"]:
        print(event["message"])
    container = task["containers"][0]
    code = container.get("exitCode")
    if code is None:
        raise DeployError(f"the checker did not run: {task.get('stoppedReason') or container.get('reason')}")
    return int(code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streamwreck.deploy.stacks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prefix", default="streamwreck", help="stack name prefix (default streamwreck)")
    parser.add_argument("--only", help="comma-separated stacks to act on (default all, in order)")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between status polls (default 5)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for one stack (default 3600)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    deploy = commands.add_parser("deploy", help="create or update the stacks in order, pushing the images")
    deploy.add_argument("--stream", help="the Kinesis stream's name (default: the prefix)")
    deploy.add_argument("--image-tag", help="tag for the images (default: the git commit)")
    deploy.add_argument("--skip-images", action="store_true", help="do not build and push (the tag must exist)")
    deploy.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="STACK.Key=Value",
        help="a template parameter, e.g. messaging.ShardCount=4 or services.ApiKeySecretArn=arn:...",
    )
    commands.add_parser("outputs", help="print every stack's outputs as JSON (the API endpoint among them)")
    commands.add_parser("check", help="run the checker once as a Fargate task and print its report")
    commands.add_parser("destroy", help="delete the stacks in reverse order and the KCL tables")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Any], int]] = {
    "deploy": cmd_deploy,
    "outputs": cmd_outputs,
    "check": cmd_check,
    "destroy": cmd_destroy,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with aws(f"running {args.command}"):  # what no step below translated itself: creating a client, say
            return COMMANDS[args.command](args, session())
    except StreamwreckError as exc:
        print(f"{args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
