"""``cmpp-gateway copy-store``: a store with every kind of record, copied SQLite -> PostgreSQL
-> SQLite, reads the same through the store's own methods at each step, and goes on giving
new ids after the copied ones; a target that is not empty, and a source a gateway is using,
are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.status import DeliveryStatus, load_tables
from gateway.store import (
    ApiRequest,
    MoMessage,
    MoPart,
    NewMessage,
    Receipt,
    SegmentResult,
    code_digest,
    create_store,
)
from tests.aio import free_port, run

CODES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers") \
    .for_provider("default")


async def fill(store) -> None:
    """Every table gets rows: messages in each state, long ones, early and unknown reports,
    MO parts and messages, callbacks, codes, idempotent answers, templates, signatures."""
    ids = [a.id for a in await store.accept(
        [NewMessage("app1", "cmcc", "13800138000", f"m{i}",
                    idempotency_key=f"k{i}" if i % 3 == 0 else None)
         for i in range(12)], now=1.0)]
    await store.record_submits(
        [SegmentResult(i, "cmcc", 1, 1, 0, (1 << 63) + i, connection="cmcc#0", at=2.0)
         for i in ids[:5]]
        + [SegmentResult(ids[5], "cmcc", p, 2, 0, 900 + p, at=2.0) for p in (1, 2)]
        + [SegmentResult(ids[6], "cmcc", 1, 1, 13, status=DeliveryStatus.REJECTED, at=2.0,
                         stat="Result 13")], "default")
    await store.record_receipts(
        [Receipt("cmcc", "cmcc#1", 77 + i, (1 << 63) + i, CODES.classify("DELIVRD"),
                 received_at=3.0) for i in ids[:3]]
        + [Receipt("cmcc", "cmcc#1", 88, 901, CODES.classify("UNDELIV"), received_at=3.5),
           Receipt("cmcc", "cmcc#0", 99, 424242, CODES.classify("DELIVRD"), received_at=4.0)])
    parts = await store.record_mo_parts(
        [MoPart("cmcc", "cmcc#0", 500 + i, "13900139000", "10690001", "", 8, 1,
                bytes([5, 0, 3, 9, 2, i + 1]) + "回复".encode("utf-16-be"), 5.0)
         for i in range(2)] + [MoPart("cmcc", "cmcc#0", 600, "13900139000", "10690001", "",
                                      0, 0, b"TD", 5.0)])
    await store.record_mo_message(MoMessage("cmcc", "13900139000", "10690001", "回复回复",
                                            b"x", 8, (parts[0].id, parts[1].id), True, 5.0),
                                  apps=("app1",))
    [entry, *_] = await store.due_callbacks(now=10.0, limit=1)
    await store.callback_done(entry.id, False, 6.0, 60.0, "HTTP 500")
    await store.accept_request(ApiRequest(
        "app1", (NewMessage("app1", "cmcc", "13700137000", "验证码123456"),),
        refused=((NewMessage("app1", "cmcc", "13600136000", "x"), 50013),),
        code=(code_digest("123456"), 300.0), idempotency_key="req-1",
        render=lambda ids, refused: (200, f'{{"msg_id": "{ids[0]}"}}')), now=7.0)
    await store.unsubscribe("13900139000", 8.0, "cmcc")
    await store.create_template({"app": "app1", "type": "notification", "content": "您好{{n}}",
                                 "signature": "", "status": 0, "code_length": 0, "ttl": 0.0,
                                 "channel": ""}, 1001, 9.0)
    await store.create_signature("app1", "商城", [(0, b"\x89PNG-bytes", "image/png")], 0, 9.0)


async def snapshot(store) -> dict:
    """What the daemon and the API can read from a store, through its own methods."""
    messages = [await store.message(i) for i in range(1, 16)]      # 14 stored
    return {
        "messages": messages, "counts": await store.status_counts(),
        "unmatched": await store.unmatched_receipts(),
        "callbacks": await store.due_callbacks(now=1e9, limit=100),
        "pending": await store.pending_callbacks(), "mo": await store.mo_view(1),
        "loose": await store.unassembled_mo_parts(),
        "templates": await store.templates(), "signatures": await store.signatures(),
        "unsubscribed": await store.unsubscribed(),
        "images": await store.query("SELECT sign_id, slot, content, content_type "
                                    "FROM signature_images"),
        "code": await store.verify_code("app1", 13, "000000", 8.5),
    }


async def with_open(setting: str, action):
    store = create_store(setting)
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


def test_a_store_copied_to_postgresql_and_back_reads_the_same(tmp_path, postgres_url, capsys):
    first, back = str(tmp_path / "first.sqlite"), str(tmp_path / "back.sqlite")

    async def scenario():
        await with_open(first, fill)
        original = await with_open(first, snapshot)
        assert await asyncio.to_thread(main, ["copy-store", "--from", first, "--to",
                                              postgres_url]) == 0
        copied = await with_open(postgres_url, snapshot)
        assert copied == original and original["code"] == "invalid"
        assert await asyncio.to_thread(main, ["copy-store", "--from", postgres_url, "--to",
                                              back]) == 0
        assert await with_open(back, snapshot) == original

        async def accept_one(store):
            return (await store.accept([NewMessage("app1", "cmcc", "1", "new")], 20.0))[0].id
        assert await with_open(postgres_url, accept_one) == 15     # after the copied ids
    run(scenario, timeout=60)
    out = capsys.readouterr().out
    assert "messages                     14 rows" in out and "counts match" in out


def test_a_target_that_holds_records_is_refused_and_left_as_it_was(tmp_path, postgres_url,
                                                                   capsys):
    source = str(tmp_path / "gw.sqlite")

    async def scenario():
        await with_open(source, fill)
        await with_open(postgres_url, lambda s: s.accept([NewMessage("a", "c", "1", "t")], 1.0))
        assert await asyncio.to_thread(main, ["copy-store", "--from", source, "--to",
                                              postgres_url]) == 1
        assert await with_open(postgres_url, lambda s: s.status_counts()) == {"accepted": 1}
    run(scenario, timeout=60)
    assert "the target already holds records" in capsys.readouterr().out


def test_a_postgresql_source_a_gateway_is_connected_to_is_refused(tmp_path, postgres_url,
                                                                  capsys):
    async def scenario():
        running = create_store(postgres_url)          # as a gateway opens it
        await running.open()
        try:
            assert await asyncio.to_thread(main, ["copy-store", "--from", postgres_url,
                                                  "--to", str(tmp_path / "copy.sqlite")]) == 1
        finally:
            await running.close()
    run(scenario, timeout=60)
    assert "a gateway is connected to the source" in capsys.readouterr().out


def test_a_missing_source_file_is_refused(tmp_path, capsys):
    assert main(["copy-store", "--from", str(tmp_path / "none.sqlite"), "--to",
                 str(tmp_path / "copy.sqlite")]) == 1
    assert "none.sqlite: no such store" in capsys.readouterr().out
    assert not (tmp_path / "copy.sqlite").exists()


def test_a_postgresql_source_that_cannot_be_reached_is_refused(tmp_path, capsys):
    assert main(["copy-store", "--from", f"postgresql://gw@127.0.0.1:{free_port()}/sms",
                 "--to", str(tmp_path / "copy.sqlite")]) == 1
    assert "/sms: the database cannot be reached" in capsys.readouterr().out


@pytest.mark.parametrize("variable", ["GW_NO_SUCH_VARIABLE_FOR_TEST"])
def test_a_password_variable_that_is_not_set_is_refused(tmp_path, capsys, variable, monkeypatch):
    monkeypatch.delenv(variable, raising=False)
    (tmp_path / "gw.sqlite").write_bytes(b"")
    assert main(["copy-store", "--from", str(tmp_path / "gw.sqlite"), "--to",
                 "postgresql://gw@127.0.0.1:1/sms", "--to-password-env", variable]) == 1
    assert f"{variable} is not set in the environment" in capsys.readouterr().out
