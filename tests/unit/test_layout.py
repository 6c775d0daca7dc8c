"""The code map holds: what each folder may import, how long a module may grow, who reads the environment, and that
every exception streamwreck raises belongs to its one error tree. Read from the source files (AST), no servers."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

from streamwreck.core.errors import StreamwreckError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = ("services", "cli", "deploy")  # installed as streamwreck, streamwreck.cli, streamwreck.deploy
MAX_MODULE_LINES = 400
SETTINGS_MODULE = ROOT / "services" / "core" / "settings.py"


def sources(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


# The code map's "may import" column (README): folder -> the streamwreck subpackages its modules may import.
MAY_IMPORT = {
    "services/core": {"core"},
    "services/api": {"core", "api"},
    "services/recorder": {"core", "recorder"},
    "services/processor": {"core", "processor"},
    "services/checker": {"core", "checker"},
    "services/local": {"core", "checker", "processor", "api", "recorder", "local"},
    "services/watcher": {"core", "checker", "processor", "watcher"},
    "deploy": {"core", "deploy"},
}


def subpackages(path: Path) -> set[str]:
    return {m.split(".")[1] for m in imported_modules(path) if m.startswith("streamwreck.") and m.count(".") >= 1}


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_each_folder_imports_only_what_the_code_map_allows(folder: str) -> None:
    for path in sources(folder):
        beyond = subpackages(path) - MAY_IMPORT[folder]
        assert not beyond, f"{path.relative_to(ROOT)} imports streamwreck.{sorted(beyond)}: see the README's code map"


@pytest.mark.parametrize("path", sources("services"), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_under_services_imports_the_command_line(path: Path) -> None:
    assert "cli" not in subpackages(path)


@pytest.mark.parametrize("path", sources("services", "cli"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_longer_than_the_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it along its seams"


@pytest.mark.parametrize("path", sources(*PACKAGE_FOLDERS), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_settings_module_reads_the_environment(path: Path) -> None:
    if path == SETTINGS_MODULE:
        return
    tree = ast.parse(path.read_text(), str(path))
    reads = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr in {"environ", "getenv", "environb", "putenv"}
    ]
    assert not reads, f"{path.relative_to(ROOT)} reads the environment at lines {reads}: use streamwreck.core.settings"


def test_the_checker_engine_neither_parses_arguments_nor_prints() -> None:
    for path in sources("services/checker"):
        assert "argparse" not in imported_modules(path), path
        calls = ast.walk(ast.parse(path.read_text(), str(path)))
        printing = [n.lineno for n in calls if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "print"]
        assert not printing, f"{path.relative_to(ROOT)} prints at {printing}: return data, let streamwreck.cli print"


def test_every_exception_streamwreck_defines_belongs_to_the_error_tree() -> None:
    import streamwreck.cli
    import streamwreck.deploy

    names = ["streamwreck", "streamwreck.cli", "streamwreck.deploy"]
    for package in (streamwreck, streamwreck.cli, streamwreck.deploy):
        names += [info.name for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    strays = []
    for name in dict.fromkeys(names):
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not issubclass(value, StreamwreckError)
            ):
                strays.append(f"{module.__name__}.{value.__name__}")
    assert not strays, f"not under StreamwreckError: {strays}"


def test_the_package_is_the_only_top_level_import_name() -> None:
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {name.split(".")[0] for name in setuptools["packages"]} == {"streamwreck"}
    assert {name.split(".")[0] for name in setuptools["package-dir"]} == {"streamwreck"}
    assert set(setuptools["package-dir"].values()) == set(PACKAGE_FOLDERS)


def test_every_package_folder_is_installed() -> None:
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {folder: package for package, folder in setuptools["package-dir"].items()}
    expected = set()
    for folder, package in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            expected.add(".".join((package, *relative)))
    missing = expected - set(setuptools["packages"])
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {sorted(missing)}: pip would skip them"


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by their base name (no packages under tests/): two alike would not both run."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({name for name in names if names.count(name) > 1})
