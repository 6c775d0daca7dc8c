"""The CloudFormation templates: cfn-lint finds nothing, checkov finds nothing that is not skipped with a reason,
the stacks' imports match the exports of the stacks they name, the task roles allow exact actions on exact
resources, and the parts the issue asks for are there (ALB health check, autoscaling bounds, the API endpoint
exported). No AWS account needed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from streamwreck.deploy import iac

ROOT = Path(__file__).resolve().parents[2]


TEMPLATES = {path.stem: iac.load_template(path) for path in iac.TEMPLATES}
SERVICES = TEMPLATES["services"]
# Actions that have no resource-level permissions: "*" is the only resource they take.
RESOURCELESS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


def test_the_five_templates_are_there() -> None:
    assert set(TEMPLATES) == {"network", "ledger", "messaging", "registry", "services"}


def test_cfn_lint_finds_nothing() -> None:
    result = subprocess.run(
        [iac.linter("cfn-lint"), *map(str, iac.TEMPLATES)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_does_catch_mistakes(tmp_path: Path) -> None:
    broken = tmp_path / "messaging.yaml"
    broken.write_text((ROOT / "cfn" / "messaging.yaml").read_text().replace("ShardCount: !Ref", "ShardCont: !Ref", 1))
    result = subprocess.run([iac.linter("cfn-lint"), str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "ShardCont" in result.stdout


def run_checkov(*files: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [iac.linter("checkov"), "--skip-download", "-o", "json", "--framework", "cloudformation", "dockerfile", "-f"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_finds_nothing_that_is_not_justified() -> None:
    reports = run_checkov(*iac.TEMPLATES, *iac.DOCKERFILES.values())
    assert {report["check_type"] for report in reports} == {"cloudformation", "dockerfile"}
    for report in reports:
        results = report["results"]
        failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]
        assert not failed, f"checkov {report['check_type']}: {failed}"
        assert not results["parsing_errors"]
        assert results["passed_checks"]
        for skipped in results["skipped_checks"]:
            reason = skipped["check_result"].get("suppress_comment", "")
            assert len(reason) > 20, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"


def test_checkov_does_catch_mistakes(tmp_path: Path) -> None:
    weak = tmp_path / "messaging.yaml"
    weak.write_text((ROOT / "cfn" / "messaging.yaml").read_text().replace("      KmsMasterKeyId: alias/aws/sns\n", ""))
    (report,) = run_checkov(weak)
    assert "CKV_AWS_26" in {c["check_id"] for c in report["results"]["failed_checks"]}  # SNS topic unencrypted


def exports(template: dict[str, Any]) -> set[str]:
    names = set()
    for output in template.get("Outputs", {}).values():
        name = output.get("Export", {}).get("Name", {})
        if isinstance(name, dict) and "Fn::Sub" in name:
            names.add(name["Fn::Sub"].removeprefix("${AWS::StackName}-"))
    return names


@pytest.mark.parametrize("stack", ["ledger", "services"])
def test_every_import_is_exported_by_the_stack_it_names(stack: str) -> None:
    template = TEMPLATES[stack]
    imports = [
        node["Fn::ImportValue"] for node in iac.walk(template) if isinstance(node, dict) and "Fn::ImportValue" in node
    ]
    assert imports
    for value in imports:
        match = re.fullmatch(r"\$\{(\w+)Stack\}-(\w+)", value["Fn::Sub"])
        assert match, value
        source, name = match.group(1).lower(), match.group(2)
        assert f"{match.group(1)}Stack" in template["Parameters"]
        assert name in exports(TEMPLATES[source]), f"{stack} imports {name} from {source}, which does not export it"


ROLES = {
    "ApiTaskRole": set(),
    "RecorderTaskRole": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"},
    "ProcessorTaskRole": {
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:ListShards",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
        "dynamodb:CreateTable",
        "dynamodb:DescribeTable",
        "dynamodb:UpdateTable",
        "dynamodb:Scan",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "sns:Publish",
        "cloudwatch:PutMetricData",
    },
    "CheckerTaskRole": {
        "kinesis:DescribeStreamSummary",
        "kinesis:ListShards",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
        "dynamodb:DescribeTable",
        "dynamodb:GetItem",
        "dynamodb:Scan",
    },
}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_task_roles_allow_exactly_their_actions(role: str) -> None:
    statements = iac.iam_statements(SERVICES, role)
    actions = {action for s in statements for action in iac.as_list(s["Action"])}
    assert actions == ROLES[role]
    task = {"ApiTaskRole": "ApiTask", "RecorderTaskRole": "RecorderTask"}.get(role)
    if task:
        assert SERVICES["Resources"][task]["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": [role, "Arn"]}


def every_role() -> list[tuple[str, str]]:
    return [
        (stack, name)
        for stack, template in TEMPLATES.items()
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role"
    ]


@pytest.mark.parametrize(("stack", "role"), every_role())
def test_no_role_has_wildcard_actions_or_resources(stack: str, role: str) -> None:
    for statement in iac.iam_statements(TEMPLATES[stack], role):
        assert statement["Effect"] == "Allow"
        actions = iac.as_list(statement["Action"])
        assert not [a for a in actions if "*" in a], f"{role}: wildcard action in {actions}"
        resources = iac.as_list(statement["Resource"])
        if "*" in resources:
            assert set(actions) <= RESOURCELESS, f"{role}: {actions} on every resource"
        if "cloudwatch:PutMetricData" in actions:
            assert statement["Condition"]["StringEquals"]["cloudwatch:namespace"]


def test_the_load_balancer_checks_the_api_health_endpoint() -> None:
    from streamwreck.api.routes import router

    targets = SERVICES["Resources"]["ApiTargets"]["Properties"]
    assert targets["HealthCheckPath"] in {getattr(route, "path", None) for route in router.routes}
    assert targets["HealthCheckPath"] == "/healthz" and targets["Port"] == 8000
    api_service = SERVICES["Resources"]["ApiService"]["Properties"]
    assert api_service["LoadBalancers"][0]["TargetGroupArn"] == {"Ref": "ApiTargets"}


def test_autoscaling_recorder_on_queue_depth_processor_up_to_the_shards() -> None:
    resources = SERVICES["Resources"]
    processor = resources["ProcessorScaling"]["Properties"]
    assert processor["MaxCapacity"] == {"Fn::ImportValue": {"Fn::Sub": "${MessagingStack}-ShardCount"}}
    recorder = resources["RecorderBacklogPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    metrics = {m["Id"]: m for m in recorder["CustomizedMetricSpecification"]["Metrics"]}
    visible = metrics["visible"]["MetricStat"]["Metric"]
    assert visible["MetricName"] == "ApproximateNumberOfMessagesVisible" and visible["Namespace"] == "AWS/SQS"
    assert visible["Dimensions"][0]["Value"] == {"Fn::ImportValue": {"Fn::Sub": "${MessagingStack}-QueueName"}}
    assert [m["Id"] for m in metrics.values() if m["ReturnData"]] == ["backlog_per_task"]


def test_the_api_endpoint_is_exported() -> None:
    output = SERVICES["Outputs"]["ApiEndpoint"]
    assert output["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-ApiEndpoint"}
    assert "LoadBalancer.DNSName" in json.dumps(output["Value"])


def test_every_service_logs_to_cloudwatch_and_runs_read_only() -> None:
    for name, resource in SERVICES["Resources"].items():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        (container,) = resource["Properties"]["ContainerDefinitions"]
        assert container["LogConfiguration"]["LogDriver"] == "awslogs", name
        assert container["ReadonlyRootFilesystem"] is True, name
        assert resource["Properties"]["RequiresCompatibilities"] == ["FARGATE"], name


def test_memcached_admits_only_the_services() -> None:
    group = TEMPLATES["ledger"]["Resources"]["CacheSecurityGroup"]["Properties"]
    (ingress,) = group["SecurityGroupIngress"]
    assert ingress["SourceSecurityGroupId"] == {"Fn::ImportValue": {"Fn::Sub": "${NetworkStack}-ServiceSecurityGroup"}}
    assert "CidrIp" not in ingress and ingress["FromPort"] == ingress["ToPort"] == 11211


def test_the_queue_redrives_and_the_subscription_delivers_raw() -> None:
    resources = TEMPLATES["messaging"]["Resources"]
    redrive = resources["RecorderQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    subscription = resources["RecorderSubscription"]["Properties"]
    assert subscription["RawMessageDelivery"] is True and subscription["Protocol"] == "sqs"
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["RecorderQueue", "Arn"]}
    assert subscription["TopicArn"] == {"Ref": "ProcessedTopic"}
