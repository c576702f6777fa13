"""Limits and Idempotency-Keys hold for requests that arrive together, over real HTTP: ten
identical sends, ten codes to one number, ten retries under one key, each at once."""

from __future__ import annotations

import asyncio
from collections import Counter

from gateway.api import messages
from gateway.store import NewMessage
from tests import api_stack
from tests.aio import run
from tests.api.test_api import stack, stored
from tests.api_stack import error

ORDER = {"mobile": "13800138000", "temp_id": 1, "temp_para": {"order": "A123"}}


async def at_once(api, count: int, path: str, body: dict, headers=None) -> list:
    return await asyncio.gather(*(api.post(path, body, headers=headers)
                                  for _ in range(count)))


def outcomes(answers: list) -> Counter:
    return Counter(status if status == 200 else body["error"]["code"]
                   for status, body in answers)


def test_ten_identical_sends_at_once_give_one_acceptance(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            answers = await at_once(api, 10, "/v1/messages", ORDER)
            assert outcomes(answers) == {200: 1, 50034: 9}
            assert all(error(50034, 403)(a) for a in answers if a[0] != 200)
            batch = {"temp_id": 5, "recipients": [{"mobile": "13900139000"}]}
            answers = await at_once(api, 10, "/v1/messages/batch", batch)
            codes = Counter(a[1]["recipients"][0].get("error_code") for a in answers)
            assert codes == {None: 1, "50034": 9}
            assert await stored(gateway) == 2 + 9       # the batches' refusals are kept
    run(scenario)


def test_large_batches_at_once_share_the_repeat_rule_and_the_apps_rate(tmp_path):
    """Batches are composed in turns (COMPOSE_CHUNK at a time); their rules are still checked
    and counted with no await in between."""
    def batch(first: int) -> dict:
        recipients = [{"mobile": f"139{first + i:08d}", "temp_para": {"order": str(i)}}
                      for i in range(300)]
        recipients[250] = {"mobile": "13800138000", "temp_para": {"order": "shared"}}
        return {"temp_id": 1, "recipients": recipients}

    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            answers = await asyncio.gather(*(api.post("/v1/messages/batch", batch(1000 * i))
                                             for i in range(3)))
            shared = Counter(a[1]["recipients"][250].get("error_code") for a in answers)
            assert shared == {None: 1, "50034": 2}
        async with stack(tmp_path, "messages_per_app_per_second = 500") as (api, gateway, sim):
            answers = await asyncio.gather(*(api.post("/v1/messages/batch", batch(10_000 * i))
                                             for i in range(1, 3)))
            assert sorted(a[0] if a[0] == 200 else a[1]["error"]["code"]
                          for a in answers) == [200, 50009]
    run(scenario)


def test_a_batch_being_composed_gives_other_requests_a_turn_every_chunk(tmp_path, monkeypatch):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            drafted, turns = [], []
            draft = messages.Composer.draft
            monkeypatch.setattr(messages.Composer, "draft",
                                lambda *args: drafted.append(1) or draft(*args))
            app = gateway.apps.get("shop")
            template = gateway.api.registry.template(app, 1, messages.SENDABLE)
            recipients = [{"mobile": f"139{i:08d}", "temp_para": {"order": str(i)}}
                          for i in range(1000)]
            async def code():                                   # another request's handler
                turns.append(len(drafted))
            other = asyncio.ensure_future(code())
            drafts = await messages._drafts(gateway.api, app, template, recipients,
                                            [r["mobile"] for r in recipients], None, False)
            await other
            assert len(drafts) == 1000 and all(isinstance(d, NewMessage) for d in drafts)
            assert turns == [messages.COMPOSE_CHUNK]    # not after the thousand
    run(scenario)


def test_ten_codes_to_one_number_at_once_give_one_acceptance(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            answers = await at_once(api, 10, "/v1/codes", {"mobile": "13800138000",
                                                           "temp_id": 2})
            assert outcomes(answers) == {200: 1, 50009: 9}
            assert all(error(50009, 403)(a) for a in answers if a[0] != 200)
            assert await stored(gateway) == 1
    run(scenario)


def test_the_codes_a_number_got_are_counted_across_a_restart(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            assert (await api.post("/v1/codes", {"mobile": "13800138000", "temp_id": 2}))[0] \
                == 200
        async with stack(tmp_path) as (api, gateway, sim):
            assert error(50009, 403)(await api.post("/v1/codes", {"mobile": "13800138000",
                                                                   "temp_id": 2}))
    run(scenario)


def test_ten_retries_under_one_key_at_once_get_the_first_answer(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            key = {"Idempotency-Key": "order-A123"}
            answers = await at_once(api, 10, "/v1/messages", ORDER, key)
            assert answers[0][0] == 200 and all(a == answers[0] for a in answers)
            codes = await at_once(api, 10, "/v1/codes", {"mobile": "13900139000",
                                                         "temp_id": 2}, {"Idempotency-Key": "c"})
            assert codes[0][0] == 200 and all(a == codes[0] for a in codes)
            assert await stored(gateway) == 2
    run(scenario)


def test_a_key_given_with_another_request_is_refused_not_answered_with_the_first(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            key = {"Idempotency-Key": "k1"}
            first = await api.post("/v1/messages", ORDER, headers=key)
            assert first[0] == 200
            # The same request, its keys in another order: the same request.
            same = {"temp_para": {"order": "A123"}, "temp_id": 1, "mobile": "13800138000"}
            assert await api.post("/v1/messages", same, headers=key) == first
            other_body = {**ORDER, "temp_para": {"order": "B456"}}
            other_endpoint = {"temp_id": 1, "recipients": [ORDER]}
            for path, body in (("/v1/messages", other_body),
                               ("/v1/messages/batch", other_endpoint),
                               ("/v1/codes", {"mobile": "13800138000", "temp_id": 2})):
                refused = await api.post(path, body, headers=key)
                assert error(50007, 403)(refused), refused
                assert "Idempotency-Key" in refused[1]["error"]["detail"]
            assert await stored(gateway) == 1
    run(scenario)


def test_a_key_is_the_apps_own(tmp_path):
    async def scenario():
        async with api_stack.stack(tmp_path) as s:
            key = {"Idempotency-Key": "k1"}
            mine = await s.api.call("POST", "/v1/messages", ORDER, headers=key)
            theirs = await s.api.call("POST", "/v1/messages", ORDER, headers=key,
                                      auth=api_stack.OTHER)
            assert mine[0] == theirs[0] == 200 and mine[1] != theirs[1]
    run(scenario)


def test_a_duplicate_waits_for_the_first_and_a_refused_first_leaves_the_key_free(tmp_path):
    async def scenario():
        async with stack(tmp_path) as (api, gateway, sim):
            key = {"Idempotency-Key": "k2"}
            bad = {**ORDER, "temp_para": {"order": "赌博"}}                  # refused: 50037
            answers = await at_once(api, 3, "/v1/messages", bad, key)
            assert all(error(50037, 403)(a) for a in answers)
            assert (await api.post("/v1/messages", ORDER, headers=key))[0] == 200
    run(scenario)
