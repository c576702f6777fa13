"""The gateway under test in ``gateway.bench.http``: its configuration (``CONFIG``), the
program that runs it in a process of its own from a checkout (``BOOT``, ``GatewayProcess``),
and a reader of its store that tells when the accepted messages are final (``StoreReader``
for an SQLite file, read-only; ``PostgresReader`` for a PostgreSQL database; ``until_final``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import asyncpg

from .checkout import CheckoutProcess
from .session import HOST

# Seconds between two looks at the store while waiting for the messages to be final. Each
# counts the unfinished ones, tens of milliseconds of this process's CPU with 100,000 of them,
# taken from the gateway on a 2-CPU machine; the end-to-end time comes from the last status's
# timestamp, not from when this process noticed it.
POLL = 0.5

CONFIG = """
[gateway]
store = "{store}"
drain_timeout = 5
log_level = "warning"
[channels.bench]
provider = "default"
host = "{host}"
port = {port}
account = "{account}"
password = "{secret}"
access_number = "106900001"
connections = 4
[api]
repeat_window = 0
messages_per_app_per_second = 0
codes_per_number_per_minute = 0
codes_per_number_per_hour = 0
max_connections_per_source = 1000
[apps.bench]
app_key = "{app_key}"
master_secret = "{master_secret}"
signature = "性能测试"
[templates.1]
type = "notification"
content = "您的订单{{{{order}}}}已发货，请注意查收"
"""


# ----------------------------------------------------------------------------- the gateway

# The gateway process's program, run by a checkout's own Python from its own directory (this
# one, or --baseline's): it uses only names every version of the daemon has (parse_config,
# setup_logging, Gateway, GatewayOptions), so that one bench drives both. It reads the
# configuration from the file named by its argument, prints the API's port, serves until its
# standard input reaches EOF (the bench said stop, or went away), then drains and stops. When
# the bench went away, nobody else will remove the store's temporary directory: it does.
BOOT = """
import asyncio, os, shutil, signal, sys
from pathlib import Path
from gateway.config import parse_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.ops import setup_logging
try:                                    # the collector as `cmpp-gateway run` sets it
    from gateway.ops import settle_heap, tune_collector
except ImportError:                     # a baseline from before: CPython's defaults
    settle_heap = tune_collector = lambda: None

async def serve(config):
    tune_collector()
    setup_logging(config.gateway.log_level, secrets=config.secrets())
    gateway = Gateway(config, GatewayOptions(serve_ops=False, api_address=(HOST, 0)))
    await gateway.start()
    await gateway.pools["bench"].wait_ready()
    settle_heap()
    loop = asyncio.get_running_loop()
    told = loop.create_future()
    loop.add_reader(0, lambda: told.done() or told.set_result(None))
    print(gateway.api_server.address[1], flush=True)
    await told
    await gateway.stop()

signal.signal(signal.SIGINT, signal.SIG_IGN)
parent = os.getppid()
config = parse_config(Path(sys.argv[1]).read_text())
asyncio.run(serve(config))
if os.getppid() != parent:
    shutil.rmtree(Path(config.gateway.store).parent, ignore_errors=True)
"""


class GatewayProcess(CheckoutProcess):
    """The gateway (daemon with its API) of the checkout at ``root`` (None: this one), run by
    that checkout's virtualenv (``root``/.venv) in a process of its own, and its API's port;
    ``stop`` lets it drain for up to a minute."""

    stop_wait = 60.0

    def __init__(self, config_text: str, config_path: Path, root: Path | None = None) -> None:
        config_path.write_text(config_text)
        super().__init__("gateway", f"HOST = {HOST!r}\n" + BOOT, (str(config_path),), root)


# ----------------------------------------------------------------------------- the store

class StoreReader:
    """The gateway's SQLite file, read-only, to see when the accepted messages are final and
    when their segments were submitted and their reports came (``stages``). The queries are
    written once for both backends: ``{n}`` marks the n-th parameter (``MARK``: SQLite's
    ``?n``, PostgreSQL's ``$n``)."""

    MARK = "?"

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def _rows(self, query: str, *params) -> list[tuple]:
        return self.db.execute(self._sql(query), params).fetchall()

    def _sql(self, query: str) -> str:
        return query.format(*(f"{self.MARK}{n}" for n in range(10)))

    def last_id(self) -> int:
        return self._rows("SELECT COALESCE(MAX(id), 0) FROM messages")[0][0]

    def unfinished(self) -> int:
        # Two queries, so that each uses the partial index of its status.
        return sum(self._rows(f"SELECT COUNT(*) FROM messages WHERE status = '{s}'")[0][0]
                   for s in ("accepted", "submitted"))

    def last_receipt_id(self) -> int:
        return self._rows("SELECT COALESCE(MAX(id), 0) FROM receipts")[0][0]

    def stages(self, after_id: int, after_receipt: int, load_end: float) -> dict[str, int | float]:
        """When the segments of the messages after ``after_id`` were submitted and the reports
        after ``after_receipt`` came, against ``load_end`` (the end of the load) and the last
        SUBMIT: how many of each, and the last time of each (None: none). A SUBMIT is a
        segments row, or (store layout 7) a single-part message's outcome on its messages row
        (messages.msg_id set, no segments row); the store of a baseline checkout of an older
        layout has no messages.msg_id, and only segments rows are counted there."""
        times = "SELECT submitted_at FROM segments WHERE message_id > {1}" + (
            " UNION ALL SELECT submitted_at FROM messages WHERE id > {1} AND msg_id IS NOT NULL"
            if self._submits_on_rows() else "")
        [(submitted, while_loading, last_submit)] = self._rows(
            "SELECT COUNT(*), COALESCE(SUM(CAST(submitted_at <= {2} AS INTEGER)), 0), "
            f"MAX(submitted_at) FROM ({times}) AS t", after_id, load_end)
        [(reports, reports_loading, reports_submitting, last_report)] = self._rows(
            "SELECT COUNT(*), COALESCE(SUM(CAST(received_at <= {1} AS INTEGER)), 0), "
            "COALESCE(SUM(CAST(received_at <= {2} AS INTEGER)), 0), MAX(received_at) "
            "FROM receipts WHERE id > {3}",
            load_end, max(last_submit or load_end, load_end), after_receipt)
        return {"submitted": submitted, "submitted_loading": while_loading,
                "last_submit": last_submit, "reports": reports,
                "reports_loading": reports_loading, "reports_submitting": reports_submitting,
                "last_report": last_report}

    def _submits_on_rows(self) -> bool:
        """Whether the store can keep a SUBMIT on a messages row (it has messages.msg_id)."""
        return any(r[1] == "msg_id" for r in self.db.execute("PRAGMA table_info(messages)"))

    def outcome(self, after_id: int) -> dict[str, tuple[int, float]]:
        """status -> (messages, last status_at) among the messages after ``after_id``."""
        rows = self._rows("SELECT status, COUNT(*), MAX(status_at) FROM messages "
                          "WHERE id > {1} GROUP BY status", after_id)
        return {status: (count, at) for status, count, at in rows}

    def close(self) -> None:
        self.db.close()


class PostgresReader(StoreReader):
    """``StoreReader`` for a gateway whose store is the PostgreSQL database at ``url``: one
    asyncpg connection, driven by an event loop in a thread of its own so that the readers'
    calls block alike. Each query reads what is committed."""

    MARK = "$"

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="store-reader",
                                        daemon=True)
        self._thread.start()
        try:
            self.db = self._call(asyncpg.connect(url))
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _rows(self, query: str, *params) -> list[tuple]:
        return [tuple(r) for r in self._call(self.db.fetch(self._sql(query), *params))]

    def _submits_on_rows(self) -> bool:
        return bool(self._rows("SELECT 1 FROM information_schema.columns WHERE "
                               "table_name = 'messages' AND column_name = 'msg_id'"))

    def close(self) -> None:
        try:
            self._call(self.db.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def until_final(store: StoreReader, after_id: int, expected: int, limit: float) -> dict:
    """Wait until every message is final (or ``limit`` seconds); what became of them."""
    deadline = time.monotonic() + limit
    while store.unfinished() and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
    outcome = store.outcome(after_id)
    delivered, last = outcome.get("delivered", (0, None))
    return {"delivered": delivered, "last_delivered": last,
            "others": {s: n for s, (n, _) in outcome.items() if s != "delivered"},
            "complete": delivered >= expected}
