"""Helpers for tests that run asyncio scenarios on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from gateway.store import create_store


def run(scenario, timeout: float = 20.0):
    """Run an async scenario with a deadline, then check that it left no task behind."""
    async def bounded():
        await asyncio.wait_for(scenario(), timeout)
        await asyncio.sleep(0)
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftovers == [], leftovers
    asyncio.run(bounded())


async def eventually(predicate, timeout: float = 5.0, step: float = 0.01) -> None:
    """Wait until ``predicate()`` is true; AssertionError after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"still false after {timeout} s: {predicate.__doc__ or predicate}")
        await asyncio.sleep(step)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` different free ports: each stays bound until all are picked (free_port
    called twice can give the same port twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def with_store(scenario, setting: str = ":memory:"):
    """Run ``scenario(store)`` with the store ``setting`` names (tests.conftest's
    store_setting gives one per backend), open, and closed after."""
    async def wrapped():
        store = create_store(setting)
        await store.open()
        try:
            await scenario(store)
        finally:
            await store.close()
    run(wrapped)
