"""The pipeline benchmark's end-to-end round: every message delivered, and the gateway's CPU
split between its event loop's thread and its other threads (SQLite's writer), which add up
to the process's."""

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
    result = asyncio.run(end_to_end(simulator.port, 300, str(tmp_path / "store.sqlite"),
                                    lambda: 0.0))
    assert result["end_to_end"] > 0 and result["elapsed"] > 0
    assert result["loop_us"] > 0            # SUBMITs, SUBMIT_RESPs and DELIVERs handled
    assert result["threads_us"] > 0         # the writer committed them
    assert result["loop_us"] + result["threads_us"] == pytest.approx(result["gateway_us"])
    assert result["database_us"] == 0
