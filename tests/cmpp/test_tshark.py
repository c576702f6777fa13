"""Our encoder, read by Wireshark's CMPP dissector (tshark), a decoder nobody here wrote.

tshark knows the header of every PDU, CONNECT, and SUBMIT up to Fee_terminal_Id; beyond those
it assumes CMPP 3.0 sizes (32-byte terminal ids, a 4-byte CONNECT_RESP Status), so only these
fields are compared. `.ci/run` installs tshark (Debian package ``tshark``).
"""

from __future__ import annotations

import random
import shutil
import string
import subprocess

import pytest

import cmpp
from tests.pcap import write_pcap

FIELDS = ("frame.number", "cmpp.Total_Length", "cmpp.Command_Id", "cmpp.Sequence_Id",
          "cmpp.connect.Source_Addr", "cmpp.Version", "cmpp.connect.Timestamp", "cmpp.Msg_Id",
          "cmpp.submit.Pk_total", "cmpp.submit.Pk_number", "cmpp.submit.Registered_Delivery",
          "cmpp.submit.Msg_level", "cmpp.Servicd_Id", "cmpp.submit.Fee_UserType",
          "cmpp.submit.Fee_terminal_Id")
HEADER_ONLY = (cmpp.ActiveTest, cmpp.ActiveTestResp, cmpp.Terminate, cmpp.TerminateResp)


def tshark_fields(path) -> list[dict[str, str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is not installed: apt-get install tshark (.ci/run does)")
    args = [tshark, "-r", str(path), "-d", "tcp.port==7890,cmpp", "-T", "fields",
            "-E", "separator=|", "-E", "occurrence=f"]
    for name in FIELDS:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    return [dict(zip(FIELDS, line.split("|"))) for line in out.splitlines()]


def text(rng: random.Random, size: int, alphabet: str = string.ascii_letters + string.digits):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, size)))


def random_pdus(seed: int, count: int) -> list[cmpp.Pdu]:
    rng = random.Random(seed)
    pdus: list[cmpp.Pdu] = []
    for i in range(count):
        sequence = rng.randrange(1 << 32)
        kind = i % 3
        if kind == 0:
            pdus.append(cmpp.Connect(sequence_id=sequence, source_addr=text(rng, 6, string.digits),
                                     authenticator_source=rng.randbytes(16),
                                     version=rng.choice((0x20, 0x21)),
                                     timestamp=int(f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
                                                   f"{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}"
                                                   f"{rng.randint(0, 59):02d}")))
        elif kind == 1:
            total = rng.randint(1, 9)
            pdus.append(cmpp.Submit(
                sequence_id=sequence, msg_id=rng.randrange(1 << 64), pk_total=total,
                pk_number=rng.randint(1, total), registered_delivery=rng.randint(0, 1),
                msg_level=rng.randint(0, 9), service_id=text(rng, 10),
                fee_user_type=rng.randint(0, 3), fee_terminal_id=text(rng, 21, string.digits),
                msg_fmt=8, msg_content=text(rng, 70).encode("utf-16-be"),
                dest_terminal_ids=tuple(f"139{rng.randrange(10**8):08d}"
                                        for _ in range(rng.randint(1, 3))),
                src_id="10690001"))
        else:
            pdus.append(rng.choice(HEADER_ONLY)(sequence_id=sequence))
    return pdus


def expected(pdu: cmpp.Pdu, frame: bytes) -> dict[str, str]:
    fields = {"cmpp.Total_Length": str(len(frame)),
              "cmpp.Command_Id": f"0x{pdu.command_id:08x}",
              "cmpp.Sequence_Id": str(pdu.sequence_id)}
    if isinstance(pdu, cmpp.Connect):
        t = f"{pdu.timestamp:010d}"
        fields.update({"cmpp.connect.Source_Addr": pdu.source_addr,
                       "cmpp.Version": f"{pdu.version >> 4:02d}.{pdu.version & 0xF:02d}",
                       "cmpp.connect.Timestamp": f"{t[0:2]}/{t[2:4]} {t[4:6]}:{t[6:8]}:{t[8:10]}"})
    elif isinstance(pdu, cmpp.Submit):
        fields.update({"cmpp.Msg_Id": f"0x{pdu.msg_id:016x}",
                       "cmpp.submit.Pk_total": str(pdu.pk_total),
                       "cmpp.submit.Pk_number": str(pdu.pk_number),
                       "cmpp.submit.Registered_Delivery": str(pdu.registered_delivery),
                       "cmpp.submit.Msg_level": str(pdu.msg_level),
                       "cmpp.Servicd_Id": pdu.service_id,
                       "cmpp.submit.Fee_UserType": str(pdu.fee_user_type),
                       "cmpp.submit.Fee_terminal_Id": pdu.fee_terminal_id})
    return fields


def test_tshark_reads_our_headers_connects_and_submits_as_we_wrote_them(tmp_path):
    pdus = random_pdus(seed=20261122, count=300)
    frames = [cmpp.encode(pdu) for pdu in pdus]
    path = tmp_path / "cmpp.pcap"
    write_pcap(path, frames)
    rows = tshark_fields(path)
    assert len(rows) == len(frames)
    mismatches = []
    for number, (pdu, frame, row) in enumerate(zip(pdus, frames, rows), 1):
        assert row["frame.number"] == str(number)
        for name, value in expected(pdu, frame).items():
            if row[name] != value:
                mismatches.append((number, type(pdu).__name__, name, value, row[name]))
    assert mismatches == []


def test_tshark_frames_a_stream_of_our_pdus_cut_anywhere(tmp_path):
    """Frames cut at random points across segments: tshark's reassembly finds the same PDUs."""
    pdus = random_pdus(seed=7, count=60)
    stream = b"".join(cmpp.encode(pdu) for pdu in pdus)
    rng, cuts, at = random.Random(3), [], 0
    while at < len(stream):
        size = rng.randint(1, 300)
        cuts.append(stream[at:at + size])
        at += size
    path = tmp_path / "stream.pcap"
    write_pcap(path, cuts)
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is not installed: apt-get install tshark (.ci/run does)")
    out = subprocess.run([tshark, "-r", str(path), "-d", "tcp.port==7890,cmpp", "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=,", "-e", "cmpp.Sequence_Id"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    seen = [int(s) for line in out.splitlines() for s in line.split(",") if s]
    assert seen == [pdu.sequence_id for pdu in pdus]
