"""docs/operators.md, tried as a new user would: every ``sh`` block, in order, in a fresh copy
of the repository, with free ports in place of the guide's 7890, 8080, 8090 and 9108.

The guide's install line is the README's setup command, which `.ci/run` runs on a fresh
machine; here, offline, the copy's ``.venv`` is this test run's environment instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.aio import free_ports

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operators.md"
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e ."
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache",
                                    ".hypothesis", "*.egg-info", "build", "dist", "*.sqlite*")
SECRETS = ("secret", "shop-master-secret-1")


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def guide_script(ports: dict[str, int]) -> str:
    blocks = sh_blocks(GUIDE.read_text(encoding="utf-8"))
    first = blocks[0].splitlines()
    assert first[0] == INSTALL
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"\n{INSTALL} && .venv/bin/cmpp-gateway demo\n" in readme   # the same setup
    script = "\n".join(["\n".join(first[1:]), *blocks[1:]])
    for old, new in ports.items():
        script = script.replace(old, str(new))
    return script


def test_every_command_of_the_operators_guide_works_from_a_fresh_copy(tmp_path):
    copy = tmp_path / "cmpp-gateway"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED, symlinks=True)
    (copy / ".venv").symlink_to(sys.prefix)
    script = guide_script(dict(zip(("7890", "8080", "8090", "9108"), free_ports(4))))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMPP_", "SHOP_"))}
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
         + script], cwd=copy, env=env, capture_output=True, text=True, timeout=240)
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr}"

    assert "# channel center: receipt codes of provider 'cmcc-gd' from " \
           f"{copy / 'providers' / 'cmcc-gd.toml'}" in out
    assert "'MK:0099' -> rejected, permanent cause, listed, JSMS 4002: number on the center's " \
        "blacklist" in out
    assert "'MK:0012' -> undeliverable, permanent cause, listed, JSMS 4004: number does not " \
        "exist" in out
    assert re.search(r'"status": ?"delivered"', out)
    assert re.search(r'"success_count": ?1, ?"failure_count": ?1', out)
    assert re.search(r'"error_code": ?"50006"', out)
    assert re.search(r'\{"sign_id": ?1\}', out)
    assert "signature 1 '极光推送' of app shop: approved" in out
    assert "added alice (admin)\nalice\tadmin\nconsole sign-in page: 200\n" in out
    assert 'cmpp_channel_up{channel="center"} 1.0' in out
    assert re.search(r'cmpp_messages_final_total\{channel="center",status="delivered"\} [1-9]',
                     out)
    assert "backup-1.sqlite: 4 messages, integrity ok" in out     # the batch's refused one too
    assert re.search(r"^results +0 OK: 50$", out, re.M)          # a strict center took them all
    assert "failures     none" in out and "\nwarning      " not in out
    strict = (copy / "strict.log").read_text()
    assert "refused" not in strict and "submits 50" in strict

    log = (copy / "gateway.log").read_text()
    assert "signal SIGHUP: draining" in log and "signal SIGTERM: draining" in log
    for secret in SECRETS:
        assert f"={secret}" not in log and f'"{secret}' not in log and secret + " " not in log
    assert "13800138000" not in log and "13800138001" not in log
