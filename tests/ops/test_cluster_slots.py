"""/readyz and the metrics of gateways sharing one store: the slots each holds, and the
slots held by all."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from tests.aio import eventually, run
from tests.api.test_shared_rules import gateways


def test_readiness_and_metrics_say_which_slots_each_gateway_holds(store_settings, tmp_path):
    async def scenario():
        async with gateways(url, 2, serving=True) as running:
            [a, b] = [g for g, _ in running]
            await eventually(lambda: sorted(len(g.slots.held["cmcc"]) for g in (a, b)) == [1, 1],
                             timeout=10)
            await asyncio.sleep(1.5)                  # a heartbeat after the last move
            for gateway in (a, b):
                ready, detail = gateway.readiness()
                cluster = detail["cluster"]
                assert ready and cluster["gateways"] == 2
                assert cluster["cluster_slots"] == {"cmcc": 2}
                assert cluster["slots"] == {"cmcc": sorted(gateway.slots.held["cmcc"])}
                text = generate_latest(gateway.metrics.registry).decode()
                held = cluster["slots"]["cmcc"][0]
                assert f'cmpp_slot_held{{channel="cmcc",slot="{held}"}} 1.0' in text
                assert f'cmpp_slot_held{{channel="cmcc",slot="{1 - held}"}} 0.0' in text
                assert 'cmpp_cluster_slots_held{channel="cmcc"} 2.0' in text
                assert "cmpp_cluster_gateways 2.0" in text
            assert set(a.slots.held["cmcc"]) | set(b.slots.held["cmcc"]) == {0, 1}
    with store_settings("postgresql", tmp_path) as url:
        run(scenario, timeout=30)
