"""The gateway under test in ``gateway.bench.soak``, and what it reads of the gateway's metrics.

The soak's account and app (``ACCOUNT``, ``SECRET``, ``APP_KEY``, ``MASTER_SECRET``), its
configuration (``CONFIG``), the gateway in a process of its own (``GatewayProcess``: its RSS,
store size, ``/metrics`` and readiness; ``stop_gateway``, SIGTERM then SIGKILL), ``free_port``,
and the reading of a ``/metrics`` sample (``total``, ``p99_ms``). On error: ``ready`` raises
RuntimeError when the process exits or is not ready in time; the others raise what they meet
(OSError from the process and its files, aiohttp's errors from ``/metrics``).
``gateway.bench.memory``, ``gateway.bench.priority`` and ``gateway.bench.instances`` use them
too. This module imports nothing of ``gateway.bench.soak``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .session import HOST

ACCOUNT, SECRET = "900001", "soak-secret-1"
APP_KEY, MASTER_SECRET = "soakapp", "soak-master-secret"


def stop_gateway(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM a ``cmpp-gateway run`` process (it drains) and wait; SIGKILL when it has not
    ended within ``timeout`` seconds. Returns its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the gateway

CONFIG = """[gateway]
store = "{dir}/soak.sqlite"
api_listen = "{host}:{api}"
metrics_listen = "{host}:{ops}"
log_level = "warning"
report_timeout = {report_timeout}
unmatched_report_timeout = {unmatched_timeout}
retention = {retention}
drain_timeout = 5

[channels.soak]
provider = "default"
host = "{host}"
port = {sim}
account = "{account}"
password_env = "SOAK_CHANNEL_PASSWORD"
access_number = "10690001"
connections = 4
window = 16

[api]
idempotency_window = {idempotency_window}
callback_retry_for = {callback_retry_for}
callback_timeout = 5

[apps.soak]
app_key = "{app_key}"
master_secret_env = "SOAK_MASTER_SECRET"
callback_format = "signed-json"      # retried within callback_retry_for, not JSMS's 3 min..12 h
status_callback = "http://{host}:{receiver}/status"
mo_callback = "http://{host}:{receiver}/mo"

[templates.1]
type = "notification"
content = "您的订单{{{{order}}}}已发货，请注意查收"
"""


class GatewayProcess:
    """``python -m gateway.cli run`` on a configuration written into ``directory`` from
    ``template`` (its placeholders: dir, host, api, ops, the ``fixed`` ones and ``settings``),
    the secrets in its environment; the log appended to ``directory``/gateway.log."""

    template, store_name = CONFIG, "soak.sqlite"
    fixed: ClassVar[dict] = {"account": ACCOUNT, "app_key": APP_KEY}
    secrets: ClassVar[dict] = {"SOAK_CHANNEL_PASSWORD": SECRET, "SOAK_MASTER_SECRET": MASTER_SECRET}

    def __init__(self, directory: Path, settings: dict) -> None:
        self.directory = directory
        self.api, self.ops = free_port(), free_port()
        self.store = directory / self.store_name
        self.log = directory / "gateway.log"
        config = directory / "gateway.toml"
        config.write_text(self.template.format(dir=directory, host=HOST, api=self.api,
                                               ops=self.ops, **self.fixed, **settings),
                          encoding="utf-8")
        env = {**os.environ, **self.secrets}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def rss_mib(self, field: str = "VmRSS") -> float:
        """The process's resident memory (``field`` of /proc/PID/status: VmRSS now, VmHWM its
        peak so far) in MiB; 0 once it is gone."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def store_mib(self) -> float:
        return sum(p.stat().st_size for p in (self.store, Path(f"{self.store}-wal"))
                   if p.exists()) / (1 << 20)

    async def metrics(self, http: aiohttp.ClientSession) -> dict:
        """Every sample of /metrics by (name, sorted label items)."""
        async with http.get(f"http://{HOST}:{self.ops}/metrics") as response:
            text = await response.text()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 60.0,
                    path: str = "/readyz") -> None:
        """Until ``path`` answers 200 (``/healthz``: the process serves, even while its
        channels are down and ``/readyz`` says 503); RuntimeError when the process exits or
        ``timeout`` passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.process.returncode}); "
                                   f"see {self.log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://{HOST}:{self.ops}{path}") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the gateway was not ready within {timeout:g} s; see {self.log}")

    def stop(self) -> int:
        return stop_gateway(self.process)

    def errors(self) -> int:
        return sum("level=error" in line for line in
                   self.log.read_text(encoding="utf-8", errors="replace").splitlines())


# ----------------------------------------------------------------------------- reading /metrics

def total(metrics: dict, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (sample, items), value in metrics.items()
               if sample == name and wanted <= set(items))


def p99_ms(before: dict, after: dict) -> float:
    """The upper bound of the commit-time bucket that holds the interval's 99th percentile."""
    name = "cmpp_store_commit_seconds_bucket"
    bounds = sorted({float(dict(items)["le"]) for sample, items in after if sample == name})
    counts = [total(after, name, le=_le(b)) - total(before, name, le=_le(b)) for b in bounds]
    if not counts or counts[-1] <= 0:
        return 0.0
    return next(b for b, c in zip(bounds, counts) if c >= 0.99 * counts[-1]) * 1000


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else str(bound)
