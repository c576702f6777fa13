"""The event loop: uvloop's when the ``fast`` extra is installed, the standard library's when
it is not or when asked (``cmpp-gateway run --loop``); the gateway serves the same on either,
says at start which one runs, and /readyz says it too."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys

import pytest

from gateway.cli import main
from gateway.ops import LoopUnavailable, loop_name, run_loop
from tests.ops.test_readiness import SEND, gateway_on, get


async def running_loop() -> str:
    return loop_name()


def without_uvloop(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)         # import uvloop: ImportError


def require_uvloop() -> None:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("the test extra installs uvloop: pip install -e '.[test]'")
        pytest.skip("uvloop is not installed (pip install -e '.[test]')")


def test_without_uvloop_auto_runs_asyncio_and_asking_for_uvloop_is_an_error(monkeypatch):
    without_uvloop(monkeypatch)
    assert run_loop(running_loop(), "auto") == "asyncio"
    coroutine = running_loop()
    with pytest.raises(LoopUnavailable, match=r"cmpp-gateway\[fast\]"):
        run_loop(coroutine, "uvloop")
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED     # never awaited


def test_run_exits_2_naming_the_extra_when_uvloop_is_asked_for_and_missing(
        tmp_path, monkeypatch, capsys):
    without_uvloop(monkeypatch)
    config = tmp_path / "gw.toml"
    config.write_text("")
    assert main(["run", "--config", str(config), "--loop", "uvloop"]) == 2
    assert "pip install 'cmpp-gateway[fast]'" in capsys.readouterr().out


def test_asyncio_is_used_when_asked_even_with_uvloop_installed():
    assert run_loop(running_loop(), "asyncio") == "asyncio"


def test_the_gateway_serves_on_uvloop_and_says_so(tmp_path, caplog):
    require_uvloop()
    caplog.set_level(logging.INFO, logger="cmpp_gateway.daemon")

    async def scenario():
        async with gateway_on(tmp_path) as (gateway, http, api, ops):
            status, ready = await get(http, f"{ops}/readyz")
            assert status == 200 and ready["event_loop"] == "uvloop"
            async with http.post(f"{api}/v1/messages",
                                 json={**SEND, "temp_para": {"order": "1"}}) as response:
                assert response.status == 200, await response.text()
                msg_id = int((await response.json())["msg_id"])

            async def delivered():
                while (await gateway.store.message(msg_id)).status != "delivered":
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(delivered(), 30)
    assert run_loop(asyncio.wait_for(scenario(), 60), "uvloop") is None
    started = [r.getMessage() for r in caplog.records if "gateway started" in r.getMessage()]
    assert started and "event loop uvloop " in started[0]
