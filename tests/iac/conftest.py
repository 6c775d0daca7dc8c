"""tests/iac/: the deployment files (cfn/, docker-compose.yml, the Dockerfiles) read as data and run through their
linters - cfn-lint, checkov (build/iac-venv, `make iac-tools`), hadolint, the Compose Specification's schema - and
checked against the code: each deployable's variables, images, stack parameters. No AWS account, no Docker engine.
Every test here carries the `iac` marker: `pytest -m iac`, or `-m "not iac"` to leave them out."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.iac)
