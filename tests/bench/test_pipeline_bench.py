"""The pipeline benchmark's end-to-end round: every message delivered (within a minute, or
the test fails rather than hangs), and the gateway's CPU split between its event loop's thread
and its other threads (SQLite's writer), each of which did some of the work."""

import asyncio

import pytest

from gateway.bench.pipeline import end_to_end
from gateway.bench.session import ServerProcess


@pytest.fixture(scope="module")
def simulator():
    server = ServerProcess("simulator")
    yield server
    server.stop()


def test_end_to_end_splits_the_cpu_between_the_loop_and_the_writer(simulator, tmp_path):
    result = asyncio.run(asyncio.wait_for(
        end_to_end(simulator.port, 300, str(tmp_path / "store.sqlite"), lambda: 0.0), 60))
    assert result["end_to_end"] > 0 and result["elapsed"] > 0
    assert result["loop_us"] > 0            # SUBMITs, SUBMIT_RESPs and DELIVERs handled
    assert result["threads_us"] > 0         # the writer's CPU, counted apart from the loop's
