"""One CMPP connection over asyncio: a thin Protocol around ``cmpp.session.Session``.

Data in goes to the session; the session's events resolve futures and reach the handlers; its
bytes go out in one ``transport.write`` per loop iteration; its next deadline is one
``loop.call_at``. Nothing here knows the protocol's rules: they are all in the session.

Every future this class creates is resolved when the connection ends, and it starts no task.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import cmpp
from cmpp import events as ev
from cmpp.session import Session, SessionConfig
from cmpp.states import Role, State

from .errors import (
    ConnectFailed,
    ConnectionClosed,
    LoginRefused,
    LoginTimedOut,
    OutcomeUnknown,
    SubmitRejectedError,
    SubmitThrottledError,
    authenticator_mismatch,
)

log = logging.getLogger("cmpp_gateway.connection")

CHINA = timezone(timedelta(hours=8), "CST")   # ISMGs check CONNECT's Timestamp in China time

EventHandler = Callable[["Connection", ev.Event], None]
# Read at every flush; a module global is read several times faster than an enum member.
_CLOSED, _ESTABLISHED = State.CLOSED, State.ESTABLISHED


def china_time() -> datetime:
    return datetime.now(CHINA)


def _raise_if_cancelling() -> None:
    """Raise CancelledError if this task was cancelled while an ``asyncio.wait_for`` returned:
    before Python 3.12, wait_for drops a cancellation that comes as its awaitable completes,
    and a pool slot cancelled just as its login succeeded would then hold its connection open
    and never end."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class SessionProtocol(asyncio.Protocol):
    """The asyncio plumbing around one session, either role: bytes in, one coalesced write per
    loop iteration out, one timer armed at the session's next deadline when bytes go out (a
    timer armed for an earlier time stays: it fires, ``handle_timer`` finds nothing due, and
    the timer is armed again; a busy link does not cancel and re-arm one for every write), and
    every event handed to ``_handle_event``.

    Events are pumped by one loop that never re-enters: a handler may call the session again
    (answer a request, acknowledge a DELIVER), and the events that produces are taken by the
    same loop, however many PDUs one read brought."""

    def __init__(self, session: Session, name: str) -> None:
        self.name = name
        self.session = session
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_scheduled = False
        self._pumping = False

    def _handle_event(self, event: ev.Event) -> None:
        """React to one session event (subclasses)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.session.receive_data(data, self._loop.time())
        self._process_events()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(f"connection lost: {exc}" if exc else "connection closed")
        self._process_events()
        self._cancel_timer()

    def _after_session_call(self, flush_now: bool = True) -> None:
        """Call after every session call: handle its events and send its bytes, now or (with
        ``flush_now`` false) at the end of this loop iteration together with whatever else is
        sent meanwhile."""
        self._process_events()
        if flush_now:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        """The flush a session call scheduled, unless one since (a read's) sent it all."""
        if self._flush_scheduled:
            self._flush()

    def _flush(self) -> None:
        """Write what the session has to send and re-arm its timer (or close, once it ended)."""
        self._flush_scheduled = False
        data = self.session.data_to_send()
        transport = self._transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
        if self.session.state is _CLOSED:
            self._cancel_timer()
            if transport is not None:
                transport.close()
        else:
            self._rearm_timer()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.session.handle_timer(self._loop.time())
        self._after_session_call()

    def _rearm_timer(self) -> None:
        due, armed = self.session.get_timer(), self._timer_at
        if due == armed or (due is not None and armed is not None and armed < due):
            return      # an earlier timer is armed: when it fires, the session is asked again
        self._cancel_timer()
        if due is not None and due != math.inf:     # inf: a heartbeat that never falls due
            self._timer_at = due
            self._timer = self._loop.call_at(due, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _process_events(self) -> None:
        if self._pumping:
            return                      # the loop below is running and will take them
        self._pumping = True
        try:
            while (event := self.session.next_event()) is not None:
                try:
                    self._handle_event(event)
                except Exception:  # noqa: BLE001 - a bug in a reaction must not break the link
                    log.exception("%s: handling %s failed", self.name, type(event).__name__)
        finally:
            self._pumping = False


class Connection(SessionProtocol):
    """A logged-in CMPP connection (client role). Open it with ``await Connection.open(...)``.

    ``on_deliver(conn, event)`` receives ``ReportReceived`` and ``MessageReceived`` and must call
    ``conn.acknowledge_deliver(event.deliver)`` once the content is safe; without it, every
    DELIVER is acknowledged at once. ``on_event(conn, event)`` sees every session event (for
    metrics and logs). Exceptions from handlers are logged and never reach the protocol.
    """

    def __init__(self, session: Session, *, name: str = "cmpp",
                 on_deliver: EventHandler | None = None, on_event: EventHandler | None = None):
        super().__init__(session, name)
        self.on_deliver = on_deliver
        self.on_event = on_event
        self.last_error: str | None = None
        self._mismatch: ev.AuthenticatorMismatch | None = None   # in CONNECT_RESP, if any
        self._unanswering = False       # declared dead because requests went unanswered
        self._pending: dict[int, asyncio.Future | Callable] = {}   # by Sequence_Id
        self._window_waiters: deque[asyncio.Future] = deque()
        self._login: asyncio.Future = self._loop.create_future()
        self._closed: asyncio.Future = self._loop.create_future()

    # ------------------------------------------------------------------------- opening

    @classmethod
    async def open(cls, host: str, port: int, account: str, secret: str | bytes, *,
                   config: SessionConfig | None = None, timeout: float = 10.0,
                   name: str | None = None, on_deliver: EventHandler | None = None,
                   on_event: EventHandler | None = None,
                   clock: Callable[[], datetime] = china_time) -> Connection:
        """Connect and log in. Raises ``ConnectFailed`` (TCP), ``LoginTimedOut`` (no answer
        within ``timeout`` seconds, TCP included) or ``LoginRefused`` (non-zero Status)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        session = Session(Role.CLIENT, config, now=loop.time())
        factory = lambda: cls(session, name=name or f"{host}:{port}",  # noqa: E731
                              on_deliver=on_deliver, on_event=on_event)
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(factory, host, port), timeout)
        except asyncio.TimeoutError:
            raise LoginTimedOut(f"no TCP connection to {host}:{port} in {timeout:g} s") from None
        except OSError as error:
            raise ConnectFailed(host, port, error) from None
        try:
            _raise_if_cancelling()
            session.login(account, secret, cmpp.timestamp(clock()), loop.time())
            conn._after_session_call()
            await asyncio.wait_for(asyncio.shield(conn._login), max(0.0, deadline - loop.time()))
            _raise_if_cancelling()
        except asyncio.TimeoutError:
            conn.abort()
            raise LoginTimedOut(f"no CONNECT_RESP from {host}:{port} in {timeout:g} s") from None
        except BaseException:
            conn.abort()
            raise
        return conn

    # ------------------------------------------------------------------------- commands

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def is_open(self) -> bool:
        return self.session.state is _ESTABLISHED

    @property
    def window_free(self) -> int:
        return self.session.window_free

    @property
    def in_window(self) -> int:
        return self.session.in_window

    async def submit(self, submit: cmpp.Submit) -> cmpp.SubmitResp:
        """Send a SUBMIT once the window has room; return its SUBMIT_RESP (Result 0).

        Raises ``SubmitThrottledError`` (Result 8), ``SubmitRejectedError`` (other non-zero
        Result), ``OutcomeUnknown`` (sent, but the connection ended or T/N ran out before an
        answer), ``ConnectionClosed`` (not sent), ValueError (a field that does not fit)."""
        session = self.session
        while session.state is not State.ESTABLISHED or session.window_free <= 0:
            if session.state is not State.ESTABLISHED:
                raise ConnectionClosed(f"{self.name} is {session.state.value}")
            waiter = self._loop.create_future()
            self._window_waiters.append(waiter)
            await waiter
        return await self.submit_nowait(submit)

    def submit_nowait(self, submit: cmpp.Submit, max_sends: int | None = None) -> asyncio.Future:
        """Send a SUBMIT now and return the future of its SUBMIT_RESP (outcomes as for
        ``submit``); ``max_sends`` caps its sends on this connection below N (see
        ``Session.submit``). The caller has checked that the connection is open with window
        to spare: otherwise SessionError (WindowFull) is raised and nothing is sent."""
        sent = self.session.submit(submit, self._loop.time(), max_sends)
        future = self._loop.create_future()
        self._pending[sent.sequence_id] = future
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)
        return future

    def submit_soon(self, submit: cmpp.Submit,
                    on_answer: Callable[[cmpp.SubmitResp | Exception], None],
                    max_sends: int | None = None) -> None:
        """As ``submit_nowait``, without a future: ``on_answer`` is called with the
        SUBMIT_RESP (Result 0) or the exception ``submit`` would raise, as soon as it is
        known, inside the read that brought it (no loop iteration in between)."""
        sent = self.session.submit(submit, self._loop.time(), max_sends)
        self._pending[sent.sequence_id] = on_answer
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def acknowledge_deliver(self, deliver: cmpp.Deliver, result: int = 0) -> bool:
        """Answer a DELIVER; False when this connection is already closed (the ISMG will
        send it again)."""
        done = self.session.acknowledge_deliver(deliver, result)
        self._after_session_call(flush_now=False)
        return done

    def acknowledge_delivers(self, delivers: list[cmpp.Deliver]) -> bool:
        """Answer several DELIVERs (Result 0) and send the answers now, in one write; False
        when this connection is already closed."""
        done = all([self.session.acknowledge_deliver(d) for d in delivers])
        self._after_session_call()
        return done

    async def close(self, timeout: float = 5.0) -> None:
        """TERMINATE and wait (at most ``timeout``) for the answer, then close the socket."""
        if self.session.state is not State.CLOSED:
            self.session.terminate(self._loop.time())
            self._after_session_call()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        except asyncio.TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now; everything waiting fails with ``OutcomeUnknown`` or
        ``ConnectionClosed``."""
        if self._transport is not None:
            self._transport.abort()
        self.session.connection_lost("aborted")
        self._process_events()

    async def wait_closed(self) -> ev.ConnectionTerminated:
        """Wait until the connection has ended; return why."""
        return await asyncio.shield(self._closed)

    # ------------------------------------------------------------------------- events

    def _handle_event(self, event: ev.Event) -> None:
        action = _EVENT_ACTIONS.get(type(event))
        if action is not None:
            action(self, event)
        self._notify(self.on_event, event)

    def _notify(self, handler: EventHandler | None, event: ev.Event) -> None:
        if handler is None:
            return
        try:
            handler(self, event)
        except Exception:  # noqa: BLE001 - a handler's bug must not break the connection
            log.exception("%s: event handler failed on %s", self.name, type(event).__name__)

    def _resolve(self, sequence_id: int, result=None, error: Exception | None = None) -> None:
        waiter = self._pending.pop(sequence_id, None)
        if self._window_waiters:
            self._open_window()
        if waiter is not None:
            self._answer(waiter, result if error is None else error)

    def _answer(self, waiter: asyncio.Future | Callable, outcome) -> None:
        """Hand a request's outcome (a response, or an exception) to whoever waits for it."""
        if not isinstance(waiter, asyncio.Future):
            try:
                waiter(outcome)
            except Exception:  # noqa: BLE001 - a caller's bug must not break the connection
                log.exception("%s: handling a SUBMIT outcome failed", self.name)
        elif waiter.done():
            return
        elif isinstance(outcome, Exception):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def _open_window(self) -> None:
        while self._window_waiters and self.session.window_free > 0:
            waiter = self._window_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # Reactions to session events.

    def _on_acknowledged(self, event: ev.SubmitAcknowledged) -> None:
        self._resolve(event.request.sequence_id, event.response)

    def _on_throttled(self, event: ev.SubmitThrottled) -> None:
        self._resolve(event.request.sequence_id, error=SubmitThrottledError())

    def _on_rejected(self, event: ev.SubmitRejected) -> None:
        self._resolve(event.request.sequence_id, error=SubmitRejectedError(event.response.result))

    def _on_timed_out(self, event: ev.RequestTimedOut) -> None:
        self._unanswering = True
        self._resolve(event.request.sequence_id, error=OutcomeUnknown(
            f"no response after {event.sends} sends", event.sends, timed_out=event.sends))

    def _on_deliver(self, event: ev.ReportReceived | ev.MessageReceived) -> None:
        if self.on_deliver is None:
            self.session.acknowledge_deliver(event.deliver)
        else:
            self._notify(self.on_deliver, event)

    def _on_login_succeeded(self, event: ev.LoginSucceeded) -> None:
        if not self._login.done():
            self._login.set_result(event)

    def _on_login_rejected(self, event: ev.LoginRejected) -> None:
        reason = event.reason
        if event.status is None and self._mismatch is not None:   # refused by us, not the center
            reason = authenticator_mismatch(self._mismatch.all_zero)
        error = LoginRefused(event.status, reason, event.retryable)
        self.last_error = str(error)
        if not self._login.done():
            self._login.set_exception(error)

    def _on_mismatch(self, event: ev.AuthenticatorMismatch) -> None:
        """Refused, the refusal says why (see ``_on_login_rejected``); tolerated, a warning."""
        self._mismatch = event
        if not self.session.config.refuse_bad_authenticator:
            log.warning('%s: %s; logged in all the same (verify_authenticator = "warn")',
                        self.name, authenticator_mismatch(event.all_zero))

    def _on_terminated(self, event: ev.ConnectionTerminated) -> None:
        if not event.reason.startswith("terminated"):
            self.last_error = self.last_error or event.reason   # a login refusal says more
        # On a link declared dead for want of answers, every send of a request still waiting
        # went unanswered; on a link lost otherwise, its last send was cut short.
        cut = 0 if self._unanswering else 1
        sends = event.sends or (1,) * len(event.unanswered)
        for request, sent in zip(event.unanswered, sends):
            waiter = self._pending.pop(request.sequence_id, None)
            if waiter is not None:
                self._answer(waiter, OutcomeUnknown(event.reason, sent, timed_out=sent - cut))
        pending, self._pending = self._pending, {}
        for waiter in pending.values():                  # e.g. cancelled by their callers
            self._answer(waiter, ConnectionClosed(event.reason))
        while self._window_waiters:
            waiter = self._window_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)                   # submit() then sees the closed state
        if not self._login.done():
            self._login.set_exception(LoginTimedOut(event.reason)
                                      if "timed out" in event.reason
                                      else ConnectionClosed(event.reason))
            self._login.exception()                       # retrieved: no "never retrieved" noise
        if not self._closed.done():
            self._closed.set_result(event)
        self._loop.call_soon(self._flush)


_EVENT_ACTIONS = {
    ev.SubmitAcknowledged: Connection._on_acknowledged,
    ev.SubmitThrottled: Connection._on_throttled,
    ev.SubmitRejected: Connection._on_rejected,
    ev.RequestTimedOut: Connection._on_timed_out,
    ev.ReportReceived: Connection._on_deliver,
    ev.MessageReceived: Connection._on_deliver,
    ev.LoginSucceeded: Connection._on_login_succeeded,
    ev.LoginRejected: Connection._on_login_rejected,
    ev.AuthenticatorMismatch: Connection._on_mismatch,
    ev.ConnectionTerminated: Connection._on_terminated,
}
