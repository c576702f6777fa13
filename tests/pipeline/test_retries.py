"""Retries with an end, against the simulator over loopback TCP: a message's sends are bounded
across all connections, every resend is counted under its reason, Result 8 without end turns
into a warning, a metric and a final status after ``retry_for``, and under policy "resend" a
message the ISMG may never have received is not ended ``unknown``. On each store backend
(``retry_for`` runs from the time the store gives each pending message)."""

from __future__ import annotations

import collections
import logging

from gateway.sim import Faults
from tests.aio import eventually, run
from tests.pipeline.test_dispatcher import accept, dispatching


def counted(dispatcher, reason: str) -> float:
    return dispatcher.metrics.resent[reason].value


def test_an_ismg_that_never_answers_gets_n_sends_of_each_message_in_all_and_they_end(
        store_setting):
    async def scenario():
        async with dispatching(store_setting, Faults(no_submit_resp=True), connections=4,
                               response_timeout=0.2, max_sends=3) as (sim, store, dispatcher):
            ids = await accept(store, dispatcher, *(f"m{i}" for i in range(48)))
            await eventually(lambda: store.counts_snapshot()["unknown"] == 48, timeout=30)
            sends = collections.Counter(s.submit.msg_content for s in sim.submits)
            assert len(sends) == 48 and max(sends.values()) <= 3, sends.most_common(3)
            message = await store.message(ids[0])
            assert message.status_stat == "outcome unknown" and message.status_temporary
            # Every send after the first is counted under its reason: T/N on the same
            # connection, or on another one after the first was declared dead.
            resent = counted(dispatcher, "timeout") + counted(dispatcher, "connection_lost")
            assert resent == sum(sends.values()) - 48 > 0
    run(scenario, timeout=60)


def test_result_8_without_end_warns_counts_and_ends_failed_after_retry_for(store_setting, caplog):
    async def scenario():
        async with dispatching(store_setting, Faults(submit_result=8),
                               retry_for=1.0) as (sim, store, dispatcher):
            [mid] = await accept(store, dispatcher, "refused forever")
            await eventually(lambda: store.counts_snapshot()["failed"] == 1, timeout=20)
            message = await store.message(mid)
            assert (message.status_stat, message.status_temporary) == ("Result 8", True)
            deferred = dispatcher.metrics.metrics.deferred.labels("cmcc", "flow_control").value
            assert deferred >= 1
            assert counted(dispatcher, "deferred") == deferred     # each deferral went again
            assert counted(dispatcher, "flow_control") == len(sim.submits) - 1 - deferred
            sends = len(sim.submits)
            await eventually(lambda: dispatcher.in_flight == 0)
            assert len(sim.submits) == sends                        # and then no more
    with caplog.at_level(logging.WARNING, logger="cmpp_gateway.dispatcher"):
        run(scenario, timeout=30)
    warnings = [r.getMessage() for r in caplog.records]
    assert any("refused with Result 8" in w for w in warnings), warnings
    assert any("not taken by the center within retry_for" in w for w in warnings), warnings


def test_under_policy_resend_a_message_cut_off_with_its_connections_is_not_ended_unknown(
        store_setting):
    async def scenario():
        faults = Faults(disconnect_after=21)              # CONNECT and 20 SUBMITs, then gone
        async with dispatching(store_setting, faults, connections=4) as (sim, store,
                                                                         dispatcher):
            await accept(store, dispatcher, *(f"m{i}" for i in range(300)))
            await eventually(lambda: store.counts_snapshot()["submitted"] == 300, timeout=60)
            assert store.counts_snapshot()["unknown"] == 0
            received = {s.submit.msg_content for s in sim.submits if s.result == 0}
            assert len(received) == 300
            assert counted(dispatcher, "connection_lost") > 0
    run(scenario, timeout=90)


def test_under_policy_resend_three_lost_connections_resend_at_once_and_the_fourth_waits(
        store_setting):
    async def scenario():
        faults = Faults(no_submit_resp=True, disconnect_after=2)   # CONNECT, SUBMIT: gone
        async with dispatching(store_setting, faults, connections=1,
                               retry_for=1.0) as (sim, store, dispatcher):
            [mid] = await accept(store, dispatcher, "a")
            await eventually(lambda: store.counts_snapshot()["unknown"] == 1, timeout=20)
            assert (await store.message(mid)).status_temporary
            rounds = dispatcher.metrics.metrics.deferred.labels("cmcc", "connection_lost").value + 1
            assert rounds >= 2
            assert len(sim.submits) == 4 * rounds               # a send and 3 resends a round
            assert counted(dispatcher, "connection_lost") == 3 * rounds
            assert counted(dispatcher, "deferred") == rounds - 1
    run(scenario, timeout=30)
