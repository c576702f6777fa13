"""Codec benchmark: cmpp.encode/decode against a minimal hand-written ``struct`` codec.

    python -m gateway.bench.codec [--seconds 0.3] [--rounds 9]

For SUBMIT (one destination, 70 UCS2 characters), SUBMIT_RESP, DELIVER carrying a status
report and ACTIVE_TEST, it times encode and decode through the public API and through the
baseline, interleaving the two in every round so that both see the same machine noise, and
prints the median ops/s of each and the ratio codec time / baseline time (target: at most 4).

The baseline is what a person writes by hand with ``struct`` for these layouts: it decodes into
and encodes from immutable named records (``NamedTuple``, the cheapest Python equivalent of the
codec's frozen dataclasses) holding the same values (text fields NUL-cut and decoded), and
checks nothing. The last line gives the floor: ACTIVE_TEST unpacked into a bare tuple.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import time
from typing import NamedTuple

import cmpp

# ----------------------------------------------------------------------------- baseline
# Immutable named records, the cheapest Python equivalent of the codec's frozen dataclasses.

class SubmitRecord(NamedTuple):
    sequence_id: int
    msg_id: int
    pk_total: int
    pk_number: int
    registered_delivery: int
    msg_level: int
    service_id: str
    fee_user_type: int
    fee_terminal_id: str
    tp_pid: int
    tp_udhi: int
    msg_fmt: int
    msg_src: str
    fee_type: str
    fee_code: str
    valid_time: str
    at_time: str
    src_id: str
    dest_terminal_ids: tuple
    msg_content: bytes
    reserve: str


class SubmitRespRecord(NamedTuple):
    sequence_id: int
    msg_id: int
    result: int


class ReportRecord(NamedTuple):
    msg_id: int
    stat: str
    submit_time: str
    done_time: str
    dest_terminal_id: str
    smsc_sequence: int


class DeliverRecord(NamedTuple):
    sequence_id: int
    msg_id: int
    dest_id: str
    service_id: str
    tp_pid: int
    tp_udhi: int
    msg_fmt: int
    src_terminal_id: str
    registered_delivery: int
    msg_content: bytes
    reserve: str
    report: ReportRecord | None


class ActiveTestRecord(NamedTuple):
    sequence_id: int


HEADER = struct.Struct(">III")
SUBMIT_FIXED = struct.Struct(">QBBBB10sB21sBBB6s2s6s17s17s21sB")
SUBMIT_RESP = struct.Struct(">IIIQB")
DELIVER_FIXED = struct.Struct(">Q21s10sBBB21sBB")
REPORT = struct.Struct(">Q7s10s10s21sI")


def _cut(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("ascii")


def base_encode_submit(r: SubmitRecord) -> bytes:
    dests = b"".join(d.encode("ascii").ljust(21, b"\0") for d in r.dest_terminal_ids)
    body = (SUBMIT_FIXED.pack(r.msg_id, r.pk_total, r.pk_number, r.registered_delivery,
                              r.msg_level, r.service_id.encode(), r.fee_user_type,
                              r.fee_terminal_id.encode(), r.tp_pid, r.tp_udhi, r.msg_fmt,
                              r.msg_src.encode(), r.fee_type.encode(), r.fee_code.encode(),
                              r.valid_time.encode(), r.at_time.encode(), r.src_id.encode(),
                              len(r.dest_terminal_ids))
            + dests + bytes((len(r.msg_content),)) + r.msg_content
            + r.reserve.encode().ljust(8, b"\0"))
    return HEADER.pack(12 + len(body), 4, r.sequence_id) + body


def base_decode_submit(frame: bytes) -> SubmitRecord:
    _, _, seq = HEADER.unpack_from(frame)
    f = SUBMIT_FIXED.unpack_from(frame, 12)
    at = 12 + SUBMIT_FIXED.size
    dests = tuple(_cut(frame[at + 21 * i:at + 21 * i + 21]) for i in range(f[17]))
    at += 21 * f[17]
    length = frame[at]
    content = frame[at + 1:at + 1 + length]
    reserve = _cut(frame[at + 1 + length:at + 9 + length])
    return SubmitRecord(seq, f[0], f[1], f[2], f[3], f[4], _cut(f[5]), f[6], _cut(f[7]), f[8],
                        f[9], f[10], _cut(f[11]), _cut(f[12]), _cut(f[13]), _cut(f[14]),
                        _cut(f[15]), _cut(f[16]), dests, content, reserve)


def base_encode_submit_resp(r: SubmitRespRecord) -> bytes:
    return SUBMIT_RESP.pack(21, 0x80000004, r.sequence_id, r.msg_id, r.result)


def base_decode_submit_resp(frame: bytes) -> SubmitRespRecord:
    _, _, seq, msg_id, result = SUBMIT_RESP.unpack(frame)
    return SubmitRespRecord(seq, msg_id, result)


def base_encode_deliver(r: DeliverRecord) -> bytes:
    p = r.report
    report = REPORT.pack(p.msg_id, p.stat.encode(), p.submit_time.encode(),
                         p.done_time.encode(), p.dest_terminal_id.encode(), p.smsc_sequence)
    body = (DELIVER_FIXED.pack(r.msg_id, r.dest_id.encode(), r.service_id.encode(), r.tp_pid,
                               r.tp_udhi, r.msg_fmt, r.src_terminal_id.encode(), 1, len(report))
            + report + r.reserve.encode().ljust(8, b"\0"))
    return HEADER.pack(12 + len(body), 5, r.sequence_id) + body


def base_decode_deliver(frame: bytes) -> DeliverRecord:
    _, _, seq = HEADER.unpack_from(frame)
    f = DELIVER_FIXED.unpack_from(frame, 12)
    at = 12 + DELIVER_FIXED.size
    p = REPORT.unpack_from(frame, at)
    report = ReportRecord(p[0], _cut(p[1]), _cut(p[2]), _cut(p[3]), _cut(p[4]), p[5])
    return DeliverRecord(seq, f[0], _cut(f[1]), _cut(f[2]), f[3], f[4], f[5], _cut(f[6]), f[7],
                         frame[at:at + f[8]], _cut(frame[at + f[8]:at + f[8] + 8]), report)


def base_encode_active_test(r: ActiveTestRecord) -> bytes:
    return HEADER.pack(12, 8, r.sequence_id)


def base_decode_active_test(frame: bytes) -> ActiveTestRecord:
    return ActiveTestRecord(HEADER.unpack(frame)[2])


# ----------------------------------------------------------------------------- cases

def _record(record_cls, pdu):
    return record_cls(*(pdu.__dict__[name] for name in record_cls._fields))


def cases():
    """(name, ours, baseline) callables for each operation, on identical values."""
    fmt, content = cmpp.encode_text("短信网关性能测试" * 8 + "中文七十字符")
    assert len(content) == 140, len(content)
    submit = cmpp.Submit(sequence_id=7, registered_delivery=1, service_id="SVC", msg_fmt=fmt,
                         msg_src="900001", src_id="106900001", dest_terminal_ids=("13800138000",),
                         msg_content=content)
    submit_record = _record(SubmitRecord, submit)
    submit_frame = cmpp.encode(submit)
    resp = cmpp.SubmitResp(sequence_id=7, msg_id=0xB2B9DA8000010000, result=0)
    resp_record = _record(SubmitRespRecord, resp)
    resp_frame = cmpp.encode(resp)
    report = cmpp.StatusReport(msg_id=0xB2B9DA8000010000, stat="DELIVRD", submit_time="2611221200",
                               done_time="2611221201", dest_terminal_id="13800138000",
                               smsc_sequence=1)
    deliver = cmpp.Deliver(sequence_id=9, msg_id=0x6642908009D959FE, dest_id="106900001",
                           service_id="SVC", src_terminal_id="13800138000", report=report)
    deliver_record = _record(DeliverRecord, deliver)._replace(report=_record(ReportRecord, report))
    deliver_frame = cmpp.encode(deliver)
    active = cmpp.ActiveTest(sequence_id=3)
    active_record = ActiveTestRecord(3)
    active_frame = cmpp.encode(active)
    # The baseline produces the same bytes and the same values as the codec.
    assert base_encode_submit(submit_record) == submit_frame
    assert base_decode_submit(submit_frame) == submit_record
    assert base_encode_submit_resp(resp_record) == resp_frame
    assert base_decode_submit_resp(resp_frame) == resp_record
    assert base_encode_deliver(deliver_record) == deliver_frame
    assert base_decode_deliver(deliver_frame) == deliver_record
    assert base_decode_active_test(active_frame) == active_record
    return [
        ("SUBMIT encode", lambda: cmpp.encode(submit), lambda: base_encode_submit(submit_record)),
        ("SUBMIT decode", lambda: cmpp.decode(submit_frame),
         lambda: base_decode_submit(submit_frame)),
        ("SUBMIT_RESP encode", lambda: cmpp.encode(resp),
         lambda: base_encode_submit_resp(resp_record)),
        ("SUBMIT_RESP decode", lambda: cmpp.decode(resp_frame),
         lambda: base_decode_submit_resp(resp_frame)),
        ("DELIVER+report encode", lambda: cmpp.encode(deliver),
         lambda: base_encode_deliver(deliver_record)),
        ("DELIVER+report decode", lambda: cmpp.decode(deliver_frame),
         lambda: base_decode_deliver(deliver_frame)),
        ("ACTIVE_TEST encode", lambda: cmpp.encode(active),
         lambda: base_encode_active_test(active_record)),
        ("ACTIVE_TEST decode", lambda: cmpp.decode(active_frame),
         lambda: base_decode_active_test(active_frame)),
    ]


def floor(seconds: float, rounds: int) -> float:
    """ACTIVE_TEST decoded into a bare tuple: what any object-returning decode pays on top."""
    frame = cmpp.encode(cmpp.ActiveTest(sequence_id=3))
    return statistics.median(ops_per_second(lambda: HEADER.unpack(frame), seconds)
                             for _ in range(rounds))


def ops_per_second(fn, seconds: float) -> float:
    """Calls per second of ``fn`` over at least ``seconds``, in batches of 1000."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            fn()
        calls += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def run(seconds: float = 0.3, rounds: int = 9) -> list[tuple[str, float, float, float]]:
    results = []
    for name, ours, base in cases():
        our_rates, base_rates = [], []
        for _ in range(rounds):
            our_rates.append(ops_per_second(ours, seconds))
            base_rates.append(ops_per_second(base, seconds))
        ours_median = statistics.median(our_rates)
        base_median = statistics.median(base_rates)
        results.append((name, ours_median, base_median, base_median / ours_median))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds; medians")
    args = parser.parse_args(argv)
    print(f"{'operation':24} {'cmpp ops/s':>12} {'struct ops/s':>13} {'ratio':>6}")
    worst = 0.0
    for name, ours, base, ratio in run(args.seconds, args.rounds):
        worst = max(worst, ratio)
        print(f"{name:24} {ours:12,.0f} {base:13,.0f} {ratio:6.2f}")
    print(f"worst ratio {worst:.2f} (target <= 4)")
    print(f"floor: ACTIVE_TEST into a bare tuple {floor(args.seconds, args.rounds):,.0f} ops/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
