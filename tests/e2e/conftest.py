"""End-to-end tests (marker ``e2e``): the whole embedded stack, see e2e_stack.py."""

from __future__ import annotations

import pytest

# Per test, and so also the first test of a module, whose stack fixture starts `local up`: above e2e_stack's budgets
# (UP_TIMEOUT + WAIT_TIMEOUT + the checks), so that a slow part fails with its message and logs, not a bare timeout.
E2E_TIMEOUT = 480


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))
