"""What a simulator is given and what it records: its accounts, its faults to inject, its
configuration, and the SUBMITs received and reports sent that tests assert on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import cmpp
from cmpp.session import SessionConfig
from gateway.channel import china_time

from .held import HeldDelivers


@dataclass
class Account:
    """An SP account: Source_Addr, shared secret, and how many connections it may hold. In
    strict mode, a SUBMIT's Src_Id must start with ``access_number`` and its Service_Id be
    one of ``service_ids`` (each unchecked when empty)."""

    account: str
    secret: str
    max_connections: int = 4
    access_number: str = ""
    service_ids: tuple[str, ...] = ()


@dataclass
class Faults:
    """Misbehaviour to inject; every field can be changed while the simulator runs."""

    no_submit_resp: bool = False          # never answer SUBMIT
    submit_resp_delay: float = 0.0        # answer SUBMIT this many seconds late
    throttle_tps: float | None = None     # Result 8 for submits above this rate per account
    submit_result: int | None = None      # answer every SUBMIT with this Result
    disconnect_after: int | None = None   # drop a connection as it receives its Nth PDU (unanswered)
    garbage_after: int | None = None      # send garbage once a connection has received N PDUs
    oversized_after: int | None = None    # send a Total_Length of 1 MiB after N PDUs
    short_active_test_resp: bool = False  # answer ACTIVE_TEST with 12 bytes (no Reserved)
    ignore_active_test: bool = False      # never answer ACTIVE_TEST
    report_before_resp: bool = False      # the report goes out before its SUBMIT_RESP
    login_status: int | None = None       # refuse every login with this Status
    duplicate_delivers: bool = False      # send every DELIVER twice
    zero_authenticator: bool = False      # AuthenticatorISMG of 16 zero bytes, as some centers


@dataclass
class SimulatorConfig:
    accounts: list[Account] = field(default_factory=lambda: [Account("900001", "secret")])
    gateway_code: int = 1                 # ISMG code inside Msg_Id (22 bits)
    report_delay: float = 0.0             # seconds from SUBMIT to its status report
    stats: dict[str, float] = field(default_factory=lambda: {"DELIVRD": 1.0})  # Stat -> weight
    too_many_connections_status: int = 5  # Status for a login beyond max_connections
    faults: Faults = field(default_factory=Faults)
    session: SessionConfig = field(default_factory=SessionConfig)
    record: bool = True                   # keep every SUBMIT and report (off for load tests)
    seed: int | None = None
    stat_for: Callable[[cmpp.Submit], str] | None = None   # a report's Stat, chosen per SUBMIT
    # Kept across a restart, as a real center keeps them: stop() puts every DELIVER not yet
    # acknowledged (sent and unanswered, queued, or a report not yet due) here, and start()
    # takes them back, to send once the SPs log in again. None: they end with the simulator.
    held: HeldDelivers | None = None
    # Refuse what a strict center refuses (gateway.sim.strict), CONNECT Timestamps more than
    # timestamp_tolerance seconds from clock() (China time now) among them.
    strict: bool = False
    timestamp_tolerance: float = 300.0
    clock: Callable[[], datetime] = china_time
    # Whether it sends ACTIVE_TEST after session.heartbeat_interval (the spec's C) of
    # silence; False: never (it answers them all the same).
    heartbeat: bool = True


@dataclass(frozen=True)
class ReceivedSubmit:
    account: str
    connection: int
    submit: cmpp.Submit
    msg_id: int | None       # None when it was refused
    result: int
    at: float
    refusal: str | None = None   # why strict mode refused it


@dataclass(frozen=True)
class SentReport:
    account: str
    deliver: cmpp.Deliver
    at: float
