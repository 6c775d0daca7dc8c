"""Where the KCL MultiLangDaemon's jars and Java are: one lookup for the processor and the local stack.

The search order: ``STREAMWRECK_KCL_JARS_DIR`` when set (and then only there), ``build/kcl-jars`` of this checkout
(``make kcl-jars``), of the working directory or one of its parents, then the jars pip's build of amazon-kclpy put
beside it (what the processor image uses).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

from streamwreck.core.errors import ConfigError
from streamwreck.core.settings import variable

MULTILANG_JAR_GLOB = "amazon-kinesis-client-multilang-*.jar"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _candidates() -> Iterator[Path]:
    cwd = Path.cwd()
    for base in dict.fromkeys((REPO_ROOT, cwd, *cwd.parents)):
        yield base / "build" / "kcl-jars"
    spec = importlib.util.find_spec("amazon_kclpy")
    if spec is not None and spec.origin:
        yield Path(spec.origin).parent / "jars"


def find_jars(configured: str | None) -> Path:
    """The folder holding the MultiLangDaemon's jars; ConfigError naming what to do when there is none."""
    if configured:
        folder = Path(configured)
        if not any(folder.glob(MULTILANG_JAR_GLOB)):
            raise ConfigError(f"{variable('kcl_jars_dir')}={configured}: no {MULTILANG_JAR_GLOB} there")
        return folder.resolve()
    for folder in _candidates():
        if any(folder.glob(MULTILANG_JAR_GLOB)):
            return folder.resolve()
    raise ConfigError(f"the KCL jars are missing: run 'make kcl-jars' or set {variable('kcl_jars_dir')}")


def find_java(java_home: str | None) -> str:
    """``$JAVA_HOME/bin/java`` when there is one, else ``java`` on PATH; ConfigError naming the package otherwise."""
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ConfigError("Java is not installed: install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    return java
