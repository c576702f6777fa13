"""Three gateway processes on one PostgreSQL store and one SMS center, one of them killed
(SIGKILL) and restarted three times under load, while a client sends through all three APIs.

Two channels, one account each, with ``connections`` 3 and ``tps`` 60: one under
``on_connection_lost = "report"``, one under "resend". The simulator (in this test's process)
counts each account's logins in force and the SUBMITs it accepts in each second, and sends long
MO whose parts go out on different connections, so on different gateways. At the end:

- every message an API acknowledged is in the store with a final status;
- every status report the simulator sent is in the store;
- under "report" no message was accepted by the center twice; under "resend" only messages
  whose first SUBMIT went out on a connection that ended abruptly (a killed gateway's);
- the center never saw more than 3 logins of an account at once, nor more than 60 SUBMITs of
  an account in a second;
- every long MO was stored once, whole.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
import time

import aiohttp

from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.status import DeliveryStatus
from gateway.store import create_store
from tests.aio import free_ports, run

CONNECTIONS, TPS, WINDOW = 3, 60, 8
CHANNELS = {"report": ("900001", "secret-1"), "resend": ("900002", "secret-2")}
APPS = {"report": ("key-report", "master-report"), "resend": ("key-resend", "master-resend")}
FINAL = {s.value for s in DeliveryStatus if s.final}
GATEWAYS = 3
RATE = 55                 # messages a second sent to each channel, under its TPS
BATCH = 10                # recipients a request (few requests: the simulator's timing stays
                          # the center's, not this process's)
SENDING = 40.0            # seconds of load
KILLS = (8.0, 19.0, 30.0)
DOWN = 2.0                # seconds a killed gateway stays down
MO_TEXT = "这是一条很长的上行短信，" * 12       # three parts


class CountingIsmg(Simulator):
    """Counts each account's logins in force (and the most at once), and notes how each
    connection ended: abruptly (a killed gateway) or with a TERMINATE."""

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(config)
        self.logged_in: collections.Counter = collections.Counter()
        self.most: collections.Counter = collections.Counter()
        self.ended: dict[int, tuple[float, bool]] = {}      # connection -> (when, abruptly)

    def on_login(self, conn, event) -> None:
        super().on_login(conn, event)
        if conn.account:                                   # accepted
            self.logged_in[conn.account] += 1
            self.most[conn.account] = max(self.most[conn.account], self.logged_in[conn.account])

    def on_terminated(self, conn, event) -> None:
        if conn.account and conn.id not in self.ended:
            self.logged_in[conn.account] -= 1
            self.ended[conn.id] = (conn._loop.time(), not event.by_peer)
        super().on_terminated(conn, event)


def config_text(store: str, sim_port: int, api_port: int, ops_port: int) -> str:
    channels = "".join(
        f'[channels.{name}]\nprovider = "default"\nhost = "127.0.0.1"\nport = {sim_port}\n'
        f'account = "{account}"\npassword = "{secret}"\naccess_number = "1069000{i}"\n'
        f'connections = {CONNECTIONS}\nwindow = {WINDOW}\ntps = {TPS}\n'
        f'on_connection_lost = "{name}"\n'
        for i, (name, (account, secret)) in enumerate(CHANNELS.items()))
    apps = "".join(
        f'[apps.{name}]\napp_key = "{key}"\nmaster_secret = "{secret}"\n'
        f'signature = "测试"\nchannels = ["{name}"]\n' for name, (key, secret) in APPS.items())
    return (f'[gateway]\nstore = "{store}"\napi_listen = "127.0.0.1:{api_port}"\n'
            f'metrics_listen = "127.0.0.1:{ops_port}"\ndrain_timeout = 5\n'
            f'report_timeout = 3600\n' + channels + apps +
            '[templates.1]\ntype = "notification"\ncontent = "通知{{n}}"\n')


class Instance:
    """One gateway process, restarted on the same configuration as often as needed."""

    def __init__(self, index: int, directory, store: str, sim_port: int) -> None:
        self.index = index
        self.api_port, self.ops_port = free_ports(2)
        self.config = directory / f"gw{index}.toml"
        self.config.write_text(config_text(store, sim_port, self.api_port, self.ops_port))
        self.config.chmod(0o600)
        self.log = open(directory / f"gw{index}.log", "ab")
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config),
            stdout=self.log, stderr=self.log, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()
        self.process = None

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)

    async def slots(self, http: aiohttp.ClientSession) -> dict | None:
        """The slots it holds, from its /readyz; None while it does not answer."""
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, KeyError):
            async with http.get(f"http://127.0.0.1:{self.ops_port}/readyz",
                                timeout=aiohttp.ClientTimeout(total=2)) as answer:
                return (await answer.json())["cluster"]["slots"]
        return None


class Client:
    """Sends batches through the gateways' APIs in turn; keeps what was acknowledged (a 200
    with a msg_id for the recipient)."""

    def __init__(self, http: aiohttp.ClientSession, instances: list[Instance]) -> None:
        self.http, self.instances = http, instances
        self.auth = {c: aiohttp.encode_basic_auth(*APPS[c]) for c in CHANNELS}
        self.acknowledged: dict[int, str] = {}         # msg_id -> channel
        self.failed = 0
        self._count = 0

    async def send(self, channel: str) -> None:
        self._count += 1
        target = self.instances[self._count % len(self.instances)]
        first = self._count * BATCH
        body = {"temp_id": 1, "recipients": [
            {"mobile": f"139{n:08d}", "temp_para": {"n": str(n)}}
            for n in range(first, first + BATCH)]}
        try:
            async with self.http.post(f"http://127.0.0.1:{target.api_port}/v1/messages/batch",
                                      json=body, headers={"Authorization": self.auth[channel]},
                                      timeout=aiohttp.ClientTimeout(total=10)) as answer:
                reply = await answer.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            self.failed += BATCH                       # a killed gateway's: not acknowledged
            return
        if answer.status != 200:
            self.failed += BATCH
            return
        for entry in reply["recipients"]:
            if "error_code" in entry:
                self.failed += 1
            else:
                self.acknowledged[int(entry["msg_id"])] = channel

    async def load(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        start, sent, tasks = loop.time(), 0, set()
        while (elapsed := loop.time() - start) < seconds:
            while sent < elapsed * RATE:
                sent += BATCH
                for channel in CHANNELS:
                    task = loop.create_task(self.send(channel))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)


async def balanced(instances: list[Instance], http, timeout: float = 60) -> None:
    """Until each gateway holds one slot of each channel."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        held = [await i.slots(http) for i in instances]
        if all(h is not None and all(len(h.get(c, [])) == 1 for c in CHANNELS) for h in held):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the slots were not shared out: {held}")


def per_second(times: list[float]) -> int:
    return max(collections.Counter(int(t) for t in times).values(), default=0)


def test_three_gateways_killed_and_restarted_under_load_keep_the_channels_rules(
        tmp_path, store_settings):
    with store_settings("postgresql", tmp_path) as store_url:
        run(lambda: scenario(tmp_path, store_url), timeout=170)


async def scenario(tmp_path, store_url: str) -> None:
    sim = CountingIsmg(SimulatorConfig(
        accounts=[Account(a, s, 10) for a, s in CHANNELS.values()], report_delay=0.2,
        seed=14))
    await sim.start()
    reader = create_store(store_url)
    await reader.open()
    instances = [Instance(i, tmp_path, store_url, sim.address[1]) for i in range(GATEWAYS)]
    async with aiohttp.ClientSession() as http:
        try:
            for instance in instances:
                await instance.start()
            await balanced(instances, http)
            client = Client(http, instances)
            loop = asyncio.get_running_loop()
            start, mo_sent = loop.time(), 0
            load = loop.create_task(client.load(SENDING))
            kill_times = []
            for k, at in enumerate(KILLS):
                await asyncio.sleep(start + at - loop.time())
                victim = instances[k % GATEWAYS]
                kill_times.append(loop.time())
                await victim.kill()
                sim.send_mo(CHANNELS["report"][0], "13800138000", "10690000", MO_TEXT)
                mo_sent += 1
                await asyncio.sleep(DOWN)
                await victim.start()
            await load
            await settled(reader, client, sim)
            for instance in instances:
                assert await instance.stop() == 0
        finally:
            for instance in instances:
                if instance.process is not None and instance.process.returncode is None:
                    instance.process.kill()
                    await instance.process.wait()
    try:
        await check(reader, client, sim, kill_times, mo_sent)
    finally:
        await reader.close()
        await sim.stop()


async def settled(reader, client: Client, sim, timeout: float = 60) -> None:
    """Until every message is final and every report sent was stored."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        statuses = dict(await reader.query("SELECT id, status FROM messages"))
        if set(statuses.values()) <= FINAL and set(client.acknowledged) <= set(statuses):
            stored = await reported(reader)
            if {r.deliver.report.msg_id for r in sim.reports} <= stored:
                return
        await asyncio.sleep(0.5)
    raise AssertionError("the gateways did not finish: " +
                         str(collections.Counter(statuses.values())))


async def reported(reader) -> set[int]:
    return {r[0] & 0xFFFFFFFFFFFFFFFF for r in await reader.query("SELECT msg_id FROM receipts")}


async def check(reader, client: Client, sim: CountingIsmg, kill_times: list[float],
                mo_sent: int) -> None:
    statuses = dict(await reader.query("SELECT id, status FROM messages"))
    lost = [i for i in client.acknowledged if statuses.get(i) not in FINAL]
    assert client.acknowledged and lost == [], lost[:5]
    assert {r.deliver.report.msg_id for r in sim.reports} <= await reported(reader)

    accounts = {account: name for name, (account, _) in CHANNELS.items()}
    accepted = collections.defaultdict(list)            # (channel, text) -> accepted SUBMITs
    for s in sim.submits:
        if s.result == 0:
            accepted[(accounts[s.account], s.submit.msg_content)].append(s)
    twice = {key: subs for key, subs in accepted.items() if len(subs) > 1}
    assert not [key for key in twice if key[0] == "report"], "sent twice under report"
    # Under resend, only what a killed gateway had in flight: its first SUBMIT went out on a
    # connection that ended abruptly, and every abrupt end came with a kill.
    assert all(sim.ended.get(subs[0].connection, (0, False))[1] for subs in twice.values())
    abrupt = [at for at, abruptly in sim.ended.values() if abruptly]
    assert all(any(0 <= at - k < 2 for k in kill_times) for at in abrupt), (abrupt, kill_times)

    assert max(sim.most.values()) <= CONNECTIONS, sim.most
    busiest = {name: per_second([s.at for s in sim.submits if s.account == account])
               for name, (account, _) in CHANNELS.items()}
    assert max(busiest.values()) <= TPS, busiest

    mo = await reader.query("SELECT text, parts, complete FROM mo")
    assert len(mo) == mo_sent and all(row == (MO_TEXT, 3, 1) for row in mo), mo
    # The kills hit work: a killed gateway's messages in doubt under report end unknown.
    unknown = collections.Counter(s for s in statuses.values() if s == "unknown")
    assert unknown["unknown"] > 0
    print(f"\nmessages {len(statuses)} (acknowledged {len(client.acknowledged)}, refused or "
          f"cut off {client.failed}), kills {len(kill_times)}, abrupt ends {len(abrupt)}, "
          f"sent twice under resend {len(twice)}, unknown {unknown['unknown']}, "
          f"most logins at once {dict(sim.most)}, busiest second {busiest}, "
          f"reports {len(sim.reports)}, long MO {len(mo)}")
