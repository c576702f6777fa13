"""A server of a checkout, this one's or another's, in a process of its own: how the
benchmarks that compare two checkouts run each side's gateway or simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .session import cpu_seconds


class CheckoutProcess:
    """``code`` run with ``python -c`` (and ``args``) by the checkout at ``root`` (None: this
    one) with its own virtualenv (``root``/.venv). The code prints the port it listens on as
    its first line, and stops when its standard input reads EOF (``stop``: at most
    ``stop_wait`` seconds, then it is terminated). RuntimeError, naming ``what``, when it
    does not start."""

    stop_wait = 10.0

    def __init__(self, what: str, code: str, args: tuple[str, ...] = (),
                 root: Path | None = None) -> None:
        if root is None:
            python, cwd = sys.executable, Path(__file__).resolve().parents[2]
        else:
            python, cwd = root / ".venv" / "bin" / "python", root
        self.process = subprocess.Popen([str(python), "-c", code, *args], cwd=cwd,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the {what} of {cwd} did not start")
        self.port = int(line)

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()          # EOF: it stops
        try:
            self.process.wait(self.stop_wait)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait()
