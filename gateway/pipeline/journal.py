"""The report journal: status reports answered (DELIVER_RESP) before their store commit.

A DELIVER may be answered once what it carried is durable (DESIGN.md, invariant 2). Waiting for
the store's commit costs a report a few milliseconds, and the ISMG holds only a window of
DELIVERs (16 a connection) unanswered: under load, that round trip sets how fast reports come
in. With a journal, a loop iteration's reports are first copied into a memory-mapped file
(shared with the kernel's page cache as soon as they are copied: a crash of the process cannot
lose them, which is what an SQLite commit at ``synchronous=NORMAL`` promises too; no system
call, so the event loop keeps the GIL), then answered at once, then stored as before. A file
whose reports are all committed is deleted; at the next start, the reports of any file left
behind (the process died before their commit) are stored again, and the store recognises
those it already has.

Used only where it keeps the store's promise: an SQLite file at ``synchronous=NORMAL``. Not
with ``FULL`` (that would need an fsync a batch) nor with PostgreSQL, where a report is durable
when any gateway of the cluster can see it, not when one machine's disk has it.

A file is ``FILE_BYTES`` allocated on disk when it is made (a full disk shows then, as an
error, not as a fault on a write to the map, on file systems that allocate for
``posix_fallocate``: ext4, XFS, tmpfs; on btrfs or ZFS a full disk can still stop the process
at a write, before the batch is answered), filled with frames, one a batch: 4 bytes of
length and 4 of CRC-32 (big-endian), then the batch as ``marshal`` data (a list of tuples of
str, int and float, the fields of ``Record``; never empty, so a frame's header is never all
zeros); zeros after the last. A frame cut short by a
crash, or one that does not check out, ends the file's replay: its reports were never
answered, so the ISMG sends them again. The file being written when the process died is
stored whole, its committed reports too: at most a file's worth of reports (about 20,000,
a second or two of the store's work before the channels connect) comes again as duplicates,
which the store recognises and counts.

Bounded: at most ``limit`` reports answered and not yet committed; beyond that (a store falling
behind, or failing), reports wait for their commit as without a journal. A batch the store
could not store stays in its file while the receipt handler tries it again, and is stored at
the next start if the process ends first.
"""

from __future__ import annotations

import fcntl
import logging
import marshal
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

log = logging.getLogger("cmpp_gateway.receipts")

_FRAME = struct.Struct(">II")      # length, CRC-32 of the marshal data
FILE_BYTES = 1 << 20               # a file: about 20,000 reports
_HELD: dict[str, int] = {}         # lock files this process holds, by path
LIMIT = 20_000                     # reports answered and not yet committed, at most


class Record(NamedTuple):
    """A report as journalled: what ``Receipt`` holds but its channel and classification
    (the channel is the journal's, and the classification is made again from ``stat``)."""

    connection: str
    deliver_msg_id: int
    msg_id: int
    stat: str
    submit_time: str
    done_time: str
    dest_terminal_id: str
    smsc_sequence: int
    received_at: float


class ReportJournal:
    """One channel's journal in ``directory`` (made if missing): files named after the
    channel, numbered in the order they were written."""

    def __init__(self, directory: Path | str, channel: str, *, limit: int = LIMIT,
                 file_bytes: int = FILE_BYTES) -> None:
        self.directory = Path(directory)
        self.prefix = quote(channel, safe="") + "."
        self.limit = limit
        self.file_bytes = file_bytes
        self.unsettled = 0             # reports written and not yet committed
        self._number = -1              # the file being written (or last written)
        self._next: int | None = None  # the next file's number; None: after those on disk
        self._map: mmap.mmap | None = None      # the file being written, mapped
        self._size = 0                 # bytes written to it
        self._batches: dict[int, list[int]] = {}    # file -> [batches written, committed]
        self._failed = False           # a write failed: logged once, until one succeeds
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------------- replay

    def left_behind(self) -> list[tuple[Path, list[Record]]]:
        """The files a previous run left, oldest first, each with its reports up to the
        first frame that is cut short or does not check out (logged). Raises OSError when the
        directory cannot be read or made."""
        self._lock()
        files = sorted(self._files(), key=lambda item: item[0])
        self._next = max(self._next or 0, files[-1][0] + 1 if files else 0)
        return [(path, _read(path)) for _, path in files]

    def _lock(self) -> None:
        """Hold the channel's lock file for as long as this process runs, so that a second
        gateway started on the same store by mistake neither replays nor deletes the files
        of the one running. Raises OSError (BlockingIOError when another process holds it)."""
        if self._lock_fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = str((self.directory / f"{self.prefix}lock").resolve())
        fd = _HELD.get(path)           # this process's already (one gateway a process)
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
            _HELD[path] = fd
        self._lock_fd = fd

    def replayed(self, path: Path) -> None:
        """The reports of ``path`` (from ``left_behind``) are in the store: delete it."""
        _delete(path)

    def _files(self):
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith(self.prefix) and name.endswith(".journal"):
                number = name[len(self.prefix):-len(".journal")]
                if number.isdigit():
                    yield int(number), path

    # ------------------------------------------------------------------------- writing

    def write(self, records: list[tuple]) -> int | None:
        """Append one batch of ``Record`` tuples; returns its file's number, to hand to
        ``committed`` once the store has them. None when the batch was not written, and its
        reports must wait for their commit before they are answered: the journal holds
        ``limit`` unsettled reports already, or a new file could not be made (logged once)."""
        if self.unsettled + len(records) > self.limit:
            return None
        try:
            blob = marshal.dumps(records)
            frame = _FRAME.pack(len(blob), zlib.crc32(blob)) + blob
            if self._map is None or self._size + len(frame) > len(self._map):
                self._close_current()
                self._open_next(len(frame))
        except Exception as error:  # noqa: BLE001 - OSError above all; never the loop's
            if not self._failed:
                log.error("report journal %s: %s; reports are answered after their commit "
                          "until a file can be made", self.directory,
                          getattr(error, "strerror", None) or error)
            self._failed = True
            return None
        self._failed = False
        self._map[self._size:self._size + len(frame)] = frame     # in the page cache now
        self._size += len(frame)
        number = self._number
        self._batches[number][0] += 1
        self.unsettled += len(records)
        return number

    def committed(self, number: int, count: int) -> None:
        """The batch written to file ``number``, of ``count`` reports, is in the store: a
        closed file whose batches all are is deleted (an error doing so is logged; the file
        is then replayed at the next start, harmlessly)."""
        self.unsettled -= count
        batches = self._batches[number]
        batches[1] += 1
        if batches[0] == batches[1] and (number != self._number or self._map is None):
            self._remove(number)

    def close(self) -> None:
        """Close the file being written; it is deleted if all its batches are committed."""
        self._close_current()

    def _open_next(self, frame_size: int) -> None:
        """Make the next file, of ``file_bytes`` (or one frame, if larger) of zeros allocated
        on disk now (a full disk is an OSError here rather than a fault on a write to the map,
        where the file system allocates: see the module's doc), and map it. Raises OSError
        (the file is then removed)."""
        self._lock()
        if self._next is None:         # never after a file left behind: it is not ours
            self._next = max((number + 1 for number, _ in self._files()), default=0)
        number, self._next = self._next, self._next + 1
        path = self._path(number)
        size = max(self.file_bytes, frame_size + _FRAME.size)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _allocate(fd, size)
            self._map = mmap.mmap(fd, size)
        except OSError:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        self._number, self._size = number, 0
        self._batches[number] = [0, 0]

    def _close_current(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            batches = self._batches[self._number]
            if batches[0] == batches[1]:
                self._remove(self._number)

    def _remove(self, number: int) -> None:
        self._batches.pop(number, None)
        _delete(self._path(number))

    def _path(self, number: int) -> Path:
        return self.directory / f"{self.prefix}{number}.journal"


def orphans(directory: Path | str, channels) -> list[str]:
    """The journal files in ``directory`` of no channel in ``channels``: left by a crash
    before a channel was renamed or removed. Nothing replays them; the daemon says so."""
    prefixes = tuple(quote(c, safe="") + "." for c in channels)
    directory = Path(directory)
    return sorted(p.name for p in directory.glob("*.journal")
                  if not p.name.startswith(prefixes)) if directory.is_dir() else []


def _delete(path: Path) -> None:
    """Delete a file whose reports are all stored; a failure is logged (the file is then
    stored again, as duplicates, at the next start)."""
    try:
        path.unlink()
    except OSError as error:
        log.warning("report journal: cannot delete %s (%s); its reports are stored again, "
                    "as duplicates, at the next start", path, error.strerror)


def _allocate(fd: int, size: int) -> None:
    """``size`` bytes of zeros on disk for ``fd`` (where the system has no posix_fallocate,
    written out). Raises OSError (a full disk)."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
    else:
        os.pwrite(fd, bytes(size), 0)


def _read(path: Path) -> list[Record]:
    """The reports of a journal file, up to its first frame that is cut short or whose CRC or
    contents do not check out (logged as a warning). Raises OSError when it cannot be read."""
    data = path.read_bytes()
    records: list[Record] = []
    offset = 0
    while offset < len(data) and any(data[offset:offset + _FRAME.size]):   # zeros: the end
        batch = _frame_at(data, offset)
        if batch is None:
            log.warning("report journal %s: %d byte(s) at offset %d are not a whole batch "
                        "(cut short by a crash: those reports were never answered)",
                        path.name, len(data) - offset, offset)
            break
        records.extend(batch)
        offset += _FRAME.size + _FRAME.unpack_from(data, offset)[0]
    return records


def _frame_at(data: bytes, offset: int) -> list[Record] | None:
    if offset + _FRAME.size > len(data):
        return None
    length, crc = _FRAME.unpack_from(data, offset)
    blob = data[offset + _FRAME.size:offset + _FRAME.size + length]
    if len(blob) != length or zlib.crc32(blob) != crc:
        return None
    try:
        batch = [Record(*fields) for fields in marshal.loads(blob)]
    except (ValueError, EOFError, TypeError):
        return None
    return batch
