"""cmpp/ stays free of I/O: no module under it imports asyncio, socket, selectors or threading."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CMPP = Path(__file__).resolve().parents[2] / "cmpp"
FORBIDDEN = {"asyncio", "socket", "selectors", "threading"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(CMPP.rglob("*.py")), ids=lambda p: p.name)
def test_module_imports_no_io(path):
    assert imported_modules(path) & FORBIDDEN == set()


def test_the_guard_sees_every_form_of_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import asyncio.events\nfrom socket import socket\nimport os, threading\n")
    assert imported_modules(probe) & FORBIDDEN == {"asyncio", "socket", "threading"}


def test_importing_cmpp_loads_no_io_module():
    code = "import sys, cmpp; print(sorted(m for m in %r if m in sys.modules))" % (sorted(FORBIDDEN),)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
