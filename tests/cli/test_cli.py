"""The command line: `cmpp-gateway decode` prints every fixture PDU readably."""

from __future__ import annotations

import cmpp
from gateway.cli import main


def test_decode_prints_all_35_vectors_and_refuses_the_7_cmpp3_ones(capsys):
    assert main(["decode"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n== ") + out.startswith("== ") == 35
    assert out.count("refused:") == 7 and out.count("CMPP 3.0") == 7
    assert "text: '测试gocmpp submit'" in out
    assert "stat: 'MK:0012'" in out
    assert "msg_id: 12878564852733378560 (11-05 14:29:42, gateway 1, sequence 0)" in out


def test_decode_of_a_hex_frame(capsys):
    frame = cmpp.encode(cmpp.SubmitResp(sequence_id=5, msg_id=1, result=8))
    assert main(["decode", frame.hex()]) == 0
    out = capsys.readouterr().out
    assert "SUBMIT_RESP (0x80000004), sequence 5" in out and "result: 8" in out


def test_strict_decode_fails_on_a_refused_frame(capsys):
    assert main(["decode", "--strict", "0000000c0000000300000001"]) == 1
    assert "unknown Command_Id" in capsys.readouterr().out


def test_decode_without_items_outside_a_checkout_says_what_to_give(monkeypatch, tmp_path):
    import pytest

    import gateway.cli.decode
    monkeypatch.setattr(gateway.cli.decode, "DEFAULT_VECTORS", tmp_path / "absent.json")
    with pytest.raises(SystemExit, match="give hex frames or a vectors JSON file"):
        main(["decode"])


def test_every_command_is_on_the_command_line():
    import argparse

    from gateway.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"decode", "run", "demo", "check-config", "simulate", "sign",
                                "template", "backup", "copy-store", "bench", "send",
                                "classify", "console-user"}
