"""Read the deployment files as data: CloudFormation templates, the compose file, Dockerfiles, and which settings
each service's code reads. The validation tests (tests/*/test_deploy_*.py) are built on these.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "cfn").glob("*.yaml"))
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILES = {
    "api": ROOT / "services" / "api" / "Dockerfile",
    "recorder": ROOT / "services" / "recorder" / "Dockerfile",
    "processor": ROOT / "services" / "processor" / "Dockerfile",
}
ENV_PREFIX = "STREAMWRECK_"


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


# --- which settings a service reads ---------------------------------------------------------------------------------

SERVICE_CODE = {
    # service -> (its own package or modules, entry modules it shares with other services)
    "api": (["services/api"], ["cli/services.py"]),
    "recorder": (["services/recorder"], ["cli/services.py"]),
    "processor": (["services/processor"], []),
    "checker": (["cli/checker.py"], []),
}
# Packages that belong to one service: another service never reads settings through them.
OWNED = ("services/api", "services/recorder", "services/processor", "services/local", "cli/services.py", "cli/local")


def settings_fields() -> tuple[set[str], dict[str, set[str]]]:
    """The Settings fields, and for each property of Settings the fields it reads."""
    from streamwreck.core.settings import Settings

    fields = set(Settings.model_fields)
    tree = ast.parse((ROOT / "services" / "core" / "settings.py").read_text())
    properties: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list
        ):
            properties[node.name] = {
                n.attr
                for n in ast.walk(node)
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
            } & fields
    return fields, properties


def _module_path(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[Path]:
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in {"services", "cli"}:
                module = _module_path(name)
                if module is not None:
                    found.add(module)
    return found


def service_modules(service: str) -> set[Path]:
    """The service's own modules and every project module they import, except modules of other services."""
    own, entries = SERVICE_CODE[service]
    start: set[Path] = set()
    for item in own:
        path = ROOT / item
        start |= set(path.rglob("*.py")) if path.is_dir() else ({path} if path.exists() else set())
    own_prefixes = tuple(str(ROOT / item) for item in own)
    seen: set[Path] = set()
    queue = list(start)
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            text = str(module)
            foreign = any(text.startswith(str(ROOT / o)) for o in OWNED) and not text.startswith(own_prefixes)
            if not foreign:
                queue.append(module)
    return seen | {ROOT / entry for entry in entries}


_SETTINGS_HOLDER = re.compile(r"(^|_)settings$")


def _holder_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def settings_read(paths: set[Path]) -> tuple[set[str], set[str]]:
    """(Settings fields read as ``settings.x`` / ``settings.require("x")``, STREAMWRECK_* names read from the
    environment directly), over the given modules."""
    fields, properties = settings_fields()
    read: set[str] = set()
    env: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                holder = _holder_name(node.value)
                if holder and _SETTINGS_HOLDER.search(holder):
                    if node.attr in fields:
                        read.add(node.attr)
                    read |= properties.get(node.attr, set())
            if isinstance(node, ast.Call):
                constants = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                if isinstance(node.func, ast.Attribute) and node.func.attr == "require":
                    read |= {c for c in constants if c in fields}
                env |= {c for c in constants if re.fullmatch(rf"{ENV_PREFIX}[A-Z0-9_]+", c)}
    return read, env


def variables_read(service: str) -> set[str]:
    """Every STREAMWRECK_* variable the service's code reads, through Settings or directly."""
    fields, env = settings_read(service_modules(service))
    return {ENV_PREFIX + name.upper() for name in fields} | env
