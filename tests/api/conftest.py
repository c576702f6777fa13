"""The API's tests that run a gateway (through tests.api_stack) run once per store backend:
a module opts in with ``pytestmark = pytest.mark.usefixtures("api_store")``."""

from __future__ import annotations

import pytest

from tests import api_stack


@pytest.fixture
def api_store(store_setting, monkeypatch) -> str:
    """Make ``store_setting`` (each backend in turn) the store of every stack the test runs."""
    monkeypatch.setattr(api_stack, "STORE", store_setting)
    return store_setting
