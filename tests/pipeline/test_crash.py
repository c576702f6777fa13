"""Crash safety: the daemon killed with SIGKILL at random moments, restarted, and nothing lost.

The daemon runs as a subprocess against the simulator (in this test's event loop), on each
store backend in turn (tests.conftest's store_setting); the simulator answers at once so that
SUBMIT_RESPs come in faster than their outcomes are committed. Messages
go into its store from this process while it runs. After every kill the store is read as the
dead process left it; at the end every accepted message must be final, every status report the
simulator sent must be in the store, and no message whose SUBMIT_RESP had been recorded before
a kill may have been submitted again after it. The simulator counts the SUBMITs it accepted
per message and per daemon run: a kill may make the next runs send again at most
2 x connections x window of the messages its run had sent, as the operator's guide promises.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import sys
import time

from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.status import DeliveryStatus
from gateway.store import NewMessage, create_store
from tests.aio import free_port, run

ACCOUNT, SECRET = "900001", "crash-secret"
FINAL = {s.value for s in DeliveryStatus if s.final}
CONNECTIONS, WINDOW = 2, 8


class RunCountingIsmg(Simulator):
    """Knows which daemon run each connection belongs to: ``run`` is set before each start."""

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(config)
        self.run = 0
        self.run_of: dict[int, int] = {}              # connection id -> daemon run

    def on_login(self, conn, event) -> None:
        self.run_of[conn.id] = self.run
        super().on_login(conn, event)

    def accepted_by_run(self) -> dict[bytes, list[int]]:
        """For each message, the runs whose SUBMITs of it were accepted (Result 0)."""
        runs = collections.defaultdict(list)
        for s in self.submits:
            if s.result == 0:
                runs[s.submit.msg_content].append(self.run_of[s.connection])
        return runs


def write_config(tmp_path, store: str, sim_port: int):
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nstore = "{store}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n'
        'drain_timeout = 5\n'
        f'[channels.cmcc]\nprovider = "default"\nhost = "127.0.0.1"\nport = {sim_port}\n'
        f'account = "{ACCOUNT}"\npassword = "{SECRET}"\naccess_number = "10690001"\n'
        f"connections = {CONNECTIONS}\nwindow = {WINDOW}\n")
    path.chmod(0o600)
    return path


async def start_daemon(config, log):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "run", "--config", str(config),
        stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def read_store(store) -> tuple[set[int], dict[int, str]]:
    """As the dead process left it: messages with a SUBMIT_RESP recorded (a Msg_Id in a
    segments row, or on the messages row of a single-part message), and every status."""
    recorded = {r[0] for r in await store.query(
        "SELECT message_id FROM segments WHERE msg_id IS NOT NULL "
        "UNION SELECT id FROM messages WHERE msg_id IS NOT NULL")}
    statuses = dict(await store.query("SELECT id, status FROM messages"))
    return recorded, statuses


def test_sigkill_at_random_moments_loses_nothing(tmp_path, store_setting):
    rng = random.Random(20261122)
    total, cycles = 6000, 6

    async def scenario():
        sim = RunCountingIsmg(SimulatorConfig(
            accounts=[Account(ACCOUNT, SECRET, 8)], report_delay=0.4,
            stats={"DELIVRD": 3, "UNDELIV": 1, "MK:0012": 1}, seed=7))
        await sim.start()
        config = write_config(tmp_path, store_setting, sim.address[1])
        feeder = create_store(store_setting)
        await feeder.open()
        log = open(tmp_path / "daemon.log", "ab")
        kills = []                       # (loop time, messages recorded, messages unfinished)
        loop = asyncio.get_running_loop()

        async def feed(first: int, count: int) -> None:
            await feeder.accept([NewMessage("app", "cmcc", "13800138000", f"crash-{first + i}")
                                 for i in range(count)], now=time.time())
        per_cycle = total // cycles
        for cycle in range(cycles):
            await feed(cycle * per_cycle, per_cycle)
            sim.run = cycle
            logins = len(sim.logins)
            daemon = await start_daemon(config, log)
            submits = sim.counters["submits"]
            while len(sim.logins) < logins + 2 or sim.counters["submits"] == submits:
                await asyncio.sleep(0.01)                # logged in and submitting
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            daemon.kill()                                # SIGKILL, mid-work
            await daemon.wait()
            recorded, statuses = await read_store(feeder)
            unfinished = sum(1 for s in statuses.values() if s not in FINAL)
            kills.append((loop.time(), recorded, unfinished))
        sim.run = cycles
        daemon = await start_daemon(config, log)
        for _ in range(900):
            _, statuses = await read_store(feeder)
            if set(statuses.values()) <= FINAL:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)         # let the last DELIVER_RESPs reach the simulator
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 20) == 0
        log.close()

        # The kills hit work in progress (messages sent and not yet final).
        assert sum(1 for _, _, unfinished in kills if unfinished) >= cycles - 1, kills

        # Every accepted message reached a final status.
        _, statuses = await read_store(feeder)
        assert len(statuses) == total
        assert set(statuses.values()) <= FINAL, collections.Counter(statuses.values())
        ids_by_text = {f"crash-{i}".encode(): i + 1 for i in range(total)}

        # No receipt lost: every report the simulator sent is in the store.
        stored = {r[0] & 0xFFFFFFFFFFFFFFFF
                  for r in await feeder.query("SELECT msg_id FROM receipts")}
        await feeder.close()
        sent = {r.deliver.report.msg_id for r in sim.reports}
        assert sent and sent <= stored, len(sent - stored)

        # No resubmission of a message whose SUBMIT_RESP was recorded before a kill.
        for killed_at, recorded, _ in kills:
            again = [s for s in sim.submits if s.at > killed_at
                     and ids_by_text[s.submit.msg_content] in recorded]
            assert again == [], again[:3]

        # Duplicates only where a SUBMIT_RESP was lost with the process: of the messages a
        # run sent, at most 2 x connections x window (the windows, and as many answered and
        # waiting for their commit) were sent again by the runs after its kill.
        runs = sim.accepted_by_run()
        assert len(runs) == total
        again = [sum(1 for seen in runs.values() if run in seen and max(seen) > run)
                 for run in range(cycles)]
        assert max(again) <= 2 * CONNECTIONS * WINDOW, again
        duplicates = sum(len(seen) - 1 for seen in runs.values())
        assert duplicates <= sum(again), (duplicates, again)   # none but those of the kills
        print(f"\nkills {cycles}, unfinished at kills {[u for _, _, u in kills]}, "
              f"sent again after each kill {again}, reports {len(sent)}")
        await sim.stop()

    run(scenario, timeout=300)
