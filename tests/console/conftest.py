"""The console's tests that run a gateway (through tests.console_stack) run once per store
backend: a module opts in with ``pytestmark = pytest.mark.usefixtures("console_store")``."""

from __future__ import annotations

import pytest

from tests import console_stack


@pytest.fixture
def console_store(store_setting, monkeypatch) -> str:
    """Make ``store_setting`` (each backend in turn) the store of every stack the test runs."""
    monkeypatch.setattr(console_stack, "STORE", store_setting)
    return store_setting
