"""Read the deployment files as data: CloudFormation templates, the compose file, Dockerfiles, and the variables
each deployable takes (its settings class in streamwreck.core.settings); find the linters that check them. The IaC
checks (tests/iac/) stand on these.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo

from streamwreck.core.settings import ENV_PREFIX, SETTINGS_OF, variable
from streamwreck.deploy.stacks import IMAGES, ROOT

TEMPLATES = sorted((ROOT / "cfn").glob("*.yaml"))
SERVICES_TEMPLATE = ROOT / "cfn" / "services.yaml"
COMPOSE = ROOT / "docker-compose.yml"
# Each Dockerfile once, by its folder's name (the api Dockerfile builds the api and the checker images).
DOCKERFILES = {Path(dockerfile).parent.name: ROOT / dockerfile for dockerfile, _ in IMAGES.values()}
# Each deployable runs as the compose service and the image of its name, and as this task definition on ECS.
TASK_DEFINITIONS = {
    "api": "ApiTask",
    "recorder": "RecorderTask",
    "processor": "ProcessorTask",
    "checker": "CheckerTask",
    "watch": "WatcherTask",
}
# checkov pins dependencies of its own, so it lives in a venv of its own (deploy.mk: make iac-tools).
IAC_VENV_BIN = ROOT / "build" / "iac-venv" / "bin"


def linter(name: str) -> str:
    """The path of a linter: beside this Python (the dev extra brings cfn-lint, hadolint, check-jsonschema), in the
    IaC venv (checkov), or on PATH; FileNotFoundError saying how to install it."""
    for folder in (Path(sys.executable).parent, IAC_VENV_BIN):
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        how = "run 'make iac-tools'" if name == "checkov" else "install the dev extra (make setup)"
        raise FileNotFoundError(f"{name} is missing: {how}")
    return found


# --- CloudFormation -------------------------------------------------------------------------------------------------


def load_template(path: Path) -> dict[str, Any]:
    """A template with its short-form tags (!Ref, !Sub, ...) as the long-form dicts CloudFormation sees."""
    from cfnlint.decode import cfn_yaml

    template: dict[str, Any] = cfn_yaml.load(str(path))
    return template


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar under ``node``."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def branches(node: Any) -> Iterator[Any]:
    """``node`` with every Fn::If resolved both ways (AWS::NoValue dropped), one level at a time."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, yes, no = node["Fn::If"]
        for side in (yes, no):
            if side != {"Ref": "AWS::NoValue"}:
                yield from branches(side)
    else:
        yield node


def container_environment(template: dict[str, Any], task: str) -> dict[str, Any]:
    """Names set for the first container of a task definition: Environment and Secrets (either Fn::If branch)."""
    container = template["Resources"][task]["Properties"]["ContainerDefinitions"][0]
    names: dict[str, Any] = {}
    for key in ("Environment", "Secrets"):
        for entries in branches(container.get(key, [])):
            for entry in entries:
                for item in branches(entry):
                    names[item["Name"]] = item.get("Value", item.get("ValueFrom"))
    return names


def iam_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement of a role's inline policies, Fn::If branches included."""
    statements: list[dict[str, Any]] = []
    for policy in template["Resources"][role]["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            statements.extend(s for s in branches(statement) if isinstance(s, dict))
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- compose --------------------------------------------------------------------------------------------------------


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    """The compose file with anchors and merge keys resolved (as docker compose reads it)."""
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


# --- Dockerfiles ----------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for word, arguments in self.instructions if word == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages with their instructions (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        word, _, arguments = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            parts = arguments.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((word, arguments.strip()))
    return stages


def stage_environment(stages: list[Stage], target: str | None = None) -> dict[str, str]:
    """ENV of the target stage (default: the last one) and of the stages it is built FROM."""
    by_name = {stage.name: stage for stage in stages if stage.name}
    stage = by_name[target] if target else stages[-1]
    chain = [stage]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    env: dict[str, str] = {}
    for link in reversed(chain):
        for arguments in link.all("ENV"):
            for token in shlex.split(arguments):
                key, sep, value = token.partition("=")
                if sep:
                    env[key] = value
    return env


# --- the variables each deployable takes ----------------------------------------------------------------------------


def settings_variables(service: str) -> dict[str, FieldInfo]:
    """Every STREAMWRECK_* variable of the deployable's settings class, with its field (required: no default)."""
    return {variable(name): info for name, info in SETTINGS_OF[service].model_fields.items()}


def ours(names: Iterable[str]) -> set[str]:
    return {name for name in names if name.startswith(ENV_PREFIX)}


def compose_variables(service: str, compose: dict[str, Any] | None = None) -> set[str]:
    """The STREAMWRECK_* variables a compose service sets (a mapping or a list of NAME=value)."""
    environment = (compose or load_compose())["services"][service].get("environment", {})
    if isinstance(environment, list):
        environment = [entry.partition("=")[0] for entry in environment]
    return ours(environment)


def task_variables(service: str, template: dict[str, Any] | None = None) -> set[str]:
    """The STREAMWRECK_* variables the deployable's ECS task definition sets (either side of any Fn::If)."""
    return ours(container_environment(template or load_template(SERVICES_TEMPLATE), TASK_DEFINITIONS[service]))


def image_variables(service: str) -> set[str]:
    """The STREAMWRECK_* variables the deployable's image sets (ENV), which every place it runs inherits."""
    dockerfile, target = IMAGES[service]
    return ours(stage_environment(parse_dockerfile(ROOT / dockerfile), target))


def unknown(service: str, names: Iterable[str]) -> set[str]:
    """The STREAMWRECK_* variables among ``names`` that are no setting of the deployable: they would do nothing."""
    return ours(names) - set(settings_variables(service))


def left_unset(service: str, names: Iterable[str]) -> dict[str, FieldInfo]:
    """The deployable's variables that ``names`` leave out: each must have a default, or the service cannot start."""
    given = set(names)
    return {name: info for name, info in settings_variables(service).items() if name not in given}


def wiring_problems(service: str, names: Iterable[str]) -> list[str]:
    """What is wrong with the STREAMWRECK_* variables ``names`` given to a deployable: a required one not given, one
    that is not a setting of it. Empty when the wiring is right."""
    names = set(names)
    settings = SETTINGS_OF[service].__name__
    problems = [
        f"{name} is required by {service} ({settings}) but not set"
        for name, info in left_unset(service, names).items()
        if info.is_required()
    ]
    problems += [
        f"{name} is not a setting of {service} ({settings}): it does nothing"
        for name in sorted(unknown(service, names))
    ]
    return problems
