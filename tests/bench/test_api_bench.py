"""``python -m gateway.bench.api`` measures each case, in a process of each tree it names, and
refuses a tree whose processes would import the gateway from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.bench import api

ROOT = Path(__file__).resolve().parents[2]


def test_every_case_is_measured_for_ours_and_the_baseline(capsys):
    assert api.main(["--rounds", "1", "--requests", "1", "--singles", "5",
                     "--baseline", str(ROOT)]) == 0
    out = capsys.readouterr().out
    medians = re.findall(r"median (\S+) +(baseline|ours), asyncio +([\d.]+) µs", out)
    assert sorted((case.strip(), tree) for case, tree, _ in medians) == sorted(
        (case, tree) for case in api.CASES for tree in ("baseline", "ours"))
    assert all(float(figure) > 0 for _, _, figure in medians)


def test_a_tree_that_does_not_import_its_own_gateway_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not that tree"):
        api.check_tree(tmp_path)
