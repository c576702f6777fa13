"""Coverage-guided fuzzing of the decoder with atheris.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python tests/fuzz/fuzz_codec.py -max_total_time=600

Seeds come from fixtures/cmpp2-vectors.json and fixtures/fuzz-regressions/ (written into
fuzz-corpus/ on start); further libFuzzer flags pass through. Each input exercises:

* ``cmpp.decode`` on the whole input: only ``CodecError`` may escape, and whatever decodes must
  encode and decode again to an equal PDU;
* ``cmpp.FrameDecoder`` on the same bytes cut at offsets taken from the input itself;
* ``cmpp.decode_report`` on the input, and UDH splitting and ``Reassembler`` on any DELIVER or
  SUBMIT that decodes.

A crash is saved by libFuzzer as crash-<sha1>; keep it in fixtures/fuzz-regressions/ so that
tests/test_fuzz_regressions.py replays it on every run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import cmpp

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz-corpus"


def check_round_trip(pdu) -> None:
    again = cmpp.decode(cmpp.encode(pdu))
    if again != pdu:
        raise AssertionError(f"round trip changed the PDU: {pdu!r} -> {again!r}")


def exercise(data: bytes) -> None:
    try:
        pdu = cmpp.decode(data)
    except cmpp.CodecError:
        pdu = None
    if pdu is not None:
        check_round_trip(pdu)
        if isinstance(pdu, (cmpp.Deliver, cmpp.Submit)):
            cmpp.split_udh(pdu.msg_content, pdu.tp_udhi)
            reassembler = cmpp.Reassembler(timeout=1)
            reassembler.feed(pdu, now=0.0)
            reassembler.expire(now=2.0)
    cuts = sorted({b % (len(data) + 1) for b in data[:8]})
    decoder = cmpp.FrameDecoder(max_length=512 + (data[0] if data else 0) * 8)
    for start, end in zip([0, *cuts], [*cuts, len(data)]):
        try:
            for pdu in decoder.feed(data[start:end]):
                check_round_trip(pdu)
        except cmpp.CodecError as error:
            if error.fatal:
                break
    try:
        cmpp.decode_report(data)
    except cmpp.CodecError:
        pass


def write_seeds() -> None:
    CORPUS.mkdir(exist_ok=True)
    for vector in json.loads((ROOT / "fixtures" / "cmpp2-vectors.json").read_text()):
        (CORPUS / f"vector-{vector['name']}").write_bytes(bytes.fromhex(vector["hex"]))
    for path in sorted((ROOT / "fixtures" / "fuzz-regressions").glob("*")):
        (CORPUS / f"regression-{path.name}").write_bytes(path.read_bytes())


def main() -> None:
    write_seeds()
    args = [sys.argv[0], *sys.argv[1:]]
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        args.append(str(CORPUS))
    atheris.Setup(args, exercise)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
