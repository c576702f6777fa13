"""Limits and Idempotency-Keys hold for requests that arrive together, over real HTTP: ten
identical sends, ten codes to one number, ten retries under one key, each at once."""

from __future__ import annotations

import asyncio
from collections import Counter

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
