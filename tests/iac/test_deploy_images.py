"""The Dockerfiles: hadolint finds nothing, and each image is what the issue asks: multi-stage on pinned slim bases,
its own extra only, a non-root user, a health check where the service has one, the KCL jars fetched by Maven.
No Docker engine needed."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streamwreck.deploy import iac
from streamwreck.deploy.stacks import IMAGES

ROOT = Path(__file__).resolve().parents[2]


# image -> the extra it installs and the command it runs (its Dockerfile and target: streamwreck.deploy.stacks.IMAGES)
CONTENTS = {
    "api": ("api", "api"),
    "checker": ("cli", "check"),
    "recorder": ("recorder", "recorder"),
    "processor": ("processor", "processor"),
    "watch": ("watch", "watch"),
}


def test_every_image_is_described() -> None:
    assert set(CONTENTS) == set(IMAGES)


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [iac.linter("hadolint"), *map(str, iac.DOCKERFILES.values())], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_catch_mistakes(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\n")
    result = subprocess.run([iac.linter("hadolint"), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def _stages(image: str) -> tuple[list[iac.Stage], iac.Stage]:
    dockerfile, target = IMAGES[image]
    stages = iac.parse_dockerfile(ROOT / dockerfile)
    named = {stage.name: stage for stage in stages}
    return stages, (named[target] if target else stages[-1])


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_installs_only_its_own_extra(image: str) -> None:
    extra, _ = CONTENTS[image]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra in extras
    stages, final = _stages(image)
    by_name = {stage.name: stage for stage in stages if stage.name}
    (copy,) = [c for c in final.all("COPY") if "/opt/venv" in c and "--from=" in c]
    builder = by_name[re.search(r"--from=(\S+)", copy).group(1)]  # type: ignore[union-attr]
    installs = [run for run in builder.all("RUN") if "pip install" in run]
    assert installs and all(f"'.[{extra}]'" in run for run in installs), installs
    assert not [run for run in builder.all("RUN") if re.search(r"\.\[(?!" + extra + r"\])", run)]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_is_multi_stage_pinned_slim_and_not_root(image: str) -> None:
    stages, final = _stages(image)
    names = {stage.name for stage in stages}
    assert len(stages) >= 2
    for stage in stages:
        if stage.base in names:
            continue
        _, _, tag = stage.base.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), stage.base
    bases = {stage.name: stage.base for stage in stages}
    root = final.base
    while root in bases:
        root = bases[root]
    assert "slim" in root, f"the runtime base {root} is not a slim image"
    users = final.all("USER")
    assert users and users[-1].split(":")[0] not in {"0", "root"}


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_runs_its_own_command(image: str) -> None:
    from streamwreck.cli.main import COMMANDS

    _, command = CONTENTS[image]
    _, final = _stages(image)
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert entrypoint == '["streamwreck"]'
    assert cmd.startswith(f'["{command}"')
    assert command in COMMANDS


def test_the_api_image_checks_its_health_endpoint() -> None:
    from streamwreck.api.routes import router

    stages, final = _stages("api")
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "/healthz" in {getattr(route, "path", None) for route in router.routes}
    assert iac.stage_environment(stages, "api")["STREAMWRECK_API_HOST"] == "0.0.0.0"


def test_the_processor_image_gets_the_kcl_jars_from_maven() -> None:
    stages = iac.parse_dockerfile(iac.DOCKERFILES["processor"])
    maven = [run for stage in stages for run in stage.all("RUN") if run.startswith("mvn ")]
    assert maven and "dependency:copy-dependencies" in maven[0] and "-DexcludeTransitive=true" in maven[0]
    copies = [copy for stage in stages for copy in stage.all("COPY")]
    assert "services/processor/pom.xml ./" in copies
    installs = [run for stage in stages for run in stage.all("RUN") if "pip install" in run]
    assert any(run.startswith("KCL_MVN_REPO_SEARCH_URL=file://") for run in installs)
    env = iac.stage_environment(stages)
    assert "JAVA_HOME" in env and env["STREAMWRECK_KCL_JARS_DIR"].endswith("amazon_kclpy/jars")


def test_dockerignore_lets_in_what_the_images_copy() -> None:
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    for path in iac.DOCKERFILES.values():
        for stage in iac.parse_dockerfile(path):
            for copy in stage.all("COPY"):
                if "--from=" in copy:
                    continue
                for source in copy.split()[:-1]:
                    assert (ROOT / source).exists(), f"{path}: COPY {source}: no such file"
                    assert source.split("/")[0] in allowed, f"{path}: COPY {source} is excluded by .dockerignore"


# What each extra's requirements are imported as; a requirement missing here fails the test below, so that a new
# dependency is placed in (or kept out of) each image deliberately.
IMPORT_NAMES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "pymemcache": "pymemcache",
    "amazon-kclpy": "amazon_kclpy",
    "httpx": "httpx",
    "rich": "rich",
    "aws-kinesis-agg": "aws_kinesis_agg",
    "moto": "moto",
    "orjson": "orjson",
    "prometheus-client": "prometheus_client",
    "psutil": "psutil",
}
BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Absent())
from streamwreck.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def extra_modules(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """Import names of what ``pip install .[extra]`` brings beyond the base dependencies."""
    modules = set()
    for requirement in extras[extra]:
        name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
        if name == "streamwreck":
            for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):  # type: ignore[union-attr]
                modules |= extra_modules(inner.strip(), extras)
        else:
            assert name in IMPORT_NAMES, f"{name} (extra {extra}): add it to IMPORT_NAMES"
            modules.add(IMPORT_NAMES[name])
    return modules


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_starts_its_command_with_only_its_extra(image: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    extra, command = CONTENTS[image]
    every = set().union(*(extra_modules(name, extras) for name in extras if name not in {"dev", "local"}))
    absent = every - extra_modules(extra, extras)
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(sorted(absent)), command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"usage: streamwreck {command}" in result.stdout
