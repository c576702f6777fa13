"""A SUBMIT's sends across a pool's connections: how many there were, how they ended, and
whether a failed one is sent again.

A SUBMIT has N sends (the channel's ``max_sends``) that may go unanswered, in all, on
whatever connections carry it: the session resends it on its connection after T, and one that
goes to another connection takes only the sends it has left there. A connection declared dead
for want of answers counts every send of the SUBMITs waiting on it as unanswered; one lost
otherwise (closed by the ISMG or the network) cuts their last send short, which does not
count. A SUBMIT left unanswered by a dying connection is sent again on another connection
(policy "resend", the default: the ISMG may then deliver it twice), up to
``max_lost_resends`` times in a row, or raised as ``OutcomeUnknown`` (policy "report"); once
its N sends went unanswered it is raised as ``SendsExhausted``. Result 8 cools that
connection down and sends again, up to ``max_throttled_sends``. Every resend the pool makes
is reported to ``on_resend`` with its reason (``flow_control``, ``connection_lost``).

``Attempt`` counts one SUBMIT's sends, ``SentNow`` is one sent by ``submit_now`` with whom to
tell, ``Submitted`` is one the ISMG accepted. ``PoolResends`` is the part of ``ChannelPool``
(a base class of it, with no state of its own) that applies these rules to a failed send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple

import cmpp

from .errors import ConnectionClosed, OutcomeUnknown, SendsExhausted, SubmitThrottledError
from .slots import Slot


class Submitted(NamedTuple):
    """A SUBMIT the ISMG accepted: its response, the connection that carried it, and how many
    times it was sent (all its sends on connections that failed under it, one on the
    connection that answered: a resend after T there is counted only in the metrics).
    A named tuple: one is made for every SUBMIT, and a tuple is the cheapest to make."""

    response: cmpp.SubmitResp
    connection: str
    sends: int
    lost: int = 0           # of which, resends after a connection died unanswered


class Attempt:
    """One SUBMIT across its sends, on whatever connections carried them: sends in all, how
    many of them went unanswered (at most N in all), were answered with Result 8, or were
    lost with a connection."""

    __slots__ = ("sends", "unanswered", "throttled", "lost")

    def __init__(self) -> None:
        self.sends = self.unanswered = self.throttled = self.lost = 0


class SentNow(Attempt):
    """A SUBMIT sent by ``submit_now``: its attempt, and who is told its outcome (one object
    per SUBMIT, where a closure and an attempt would be two). ``pool`` is the
    ``ChannelPool`` that sent it."""

    __slots__ = ("pool", "slot", "connection", "submit", "on_done")

    def __init__(self, pool: PoolResends, slot: Slot, connection: str, submit: cmpp.Submit,
                 on_done: Callable[[Submitted | Exception], None]) -> None:
        self.sends, self.unanswered, self.throttled, self.lost = 1, 0, 0, 0
        self.pool, self.slot, self.connection, self.submit = pool, slot, connection, submit
        self.on_done = on_done

    def answered(self, answer: cmpp.SubmitResp | Exception) -> None:
        """Its outcome: done (Result 0), or handed to the pool to send again or give up."""
        if isinstance(answer, Exception):
            self.pool._resend_now(answer, self)
            return
        self.slot.throttled_in_a_row = 0
        self.pool._done(self.on_done, Submitted(answer, self.connection, self.sends, self.lost))


class PoolResends:
    """The resend rules of a ``ChannelPool``; see the module docstring."""

    def _count_failure(self, slot: Slot, error: Exception, attempt: Attempt) -> None:
        """A send of this SUBMIT failed: return to send it again, or raise. Result 8 cools
        the connection and is sent again up to the cap. A SUBMIT lost with its connection is
        sent again under policy "resend", up to the cap of lost connections in a row, while
        it has sends left that may go unanswered (N in all; SendsExhausted once none are
        left). One that never left does not count."""
        if isinstance(error, SubmitThrottledError):
            attempt.throttled += 1
            self._cool(slot)
            if attempt.throttled > self.tuning.max_throttled_sends:
                raise error
            self._count_resend("flow_control")
        elif isinstance(error, OutcomeUnknown):
            attempt.sends += error.sends - 1          # the session's resends on that link
            attempt.unanswered += error.timed_out
            attempt.lost += 1
            if attempt.unanswered >= self.channel.max_sends:
                raise SendsExhausted(f"no response to {attempt.unanswered} sends in all "
                                     f"({error.reason})", error.sends, error.timed_out) from error
            if (self.channel.on_connection_lost == "report" or self._closed
                    or attempt.lost > self.tuning.max_lost_resends):
                raise error
            self._count_resend("connection_lost")
        elif isinstance(error, ConnectionClosed):
            attempt.sends -= 1               # it never left: not a send
        else:
            raise error

    def _count_resend(self, reason: str) -> None:
        if self.on_resend is not None:
            self.on_resend(reason)

    def _cool(self, slot: Slot) -> None:
        slot.throttled_in_a_row += 1
        delay = self.tuning.throttle.delay(slot.throttled_in_a_row - 1, self._rng)
        slot.cooling_until = asyncio.get_running_loop().time() + delay
