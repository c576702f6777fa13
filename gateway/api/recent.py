"""The repeat rule's memory: which 64-bit keys were added in the last ``window`` seconds.

An open-addressing hash table (linear probing; a slot is a key and the number of its latest
add) and a ring of the adds in the order they came (each add's time and the table slot of
its key). A million keys take about 44 MiB: a 16-byte slot for each of 2 x ``limit`` and a
12-byte ring entry for each of ``limit``. A dict of keys to float times took 105 to 133
bytes a key, and twice its table for a moment each time it grew, which the gateway's peak
RSS showed (issue 15).

Both are sized for ``limit`` from the start in anonymous memory maps, whose pages the kernel
maps on their first write: memory comes as keys do, and no call copies or zeroes a table.
No call does work in proportion to the keys held either: a lookup probes a few slots (the
table is at most half full up to ``limit``), and the adds that left the window are dropped
at most ``STEP`` a call, each slot freed by Knuth's deletion for linear probing (Algorithm
R), which moves back the keys after it that need to: no tombstones and no rebuild.
"""

from __future__ import annotations

import hashlib
import mmap
import secrets

_MOST = (1 << 64) - 1


def _as_key(key) -> int:
    """Repeat keys are 64-bit unsigned ints; anything else (a test's string, a larger int) is
    reduced to 64 bits."""
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "big")


def _bits(keys: int) -> int:
    """The table's size in bits (slots) for ``keys`` keys at most half full."""
    return max(3, (2 * keys - 1).bit_length())


def _zeros(typecode: str, length: int) -> memoryview:
    """``length`` zeros of ``typecode`` ("Q", "d" or "I"), in pages mapped as they are written."""
    size = {"Q": 8, "d": 8, "I": 4}[typecode]
    return memoryview(mmap.mmap(-1, size * length)).cast(typecode)


class RecentKeys:
    """Which sends were seen in the last ``window`` seconds: the repeat rule's memory, one
    time per key, the latest it was added at. Keys are 64-bit digests (of number and text;
    other keys are digested first). A key's slot in the table is the top bits of the key
    times ``MIX``, an odd number drawn when the process starts: the digests are not keyed
    (every gateway sharing a store must compute the same ones), so an app that ground out
    numbers and texts whose digests share their top bits could otherwise pile its keys into
    one long run of slots, which every lookup near it would walk.

    At most ``limit`` keys are kept. When that many are still inside the window, ``full``
    says so and the rule refuses what it could not remember (``SendRules.check_recipient``)
    instead of forgetting a key early: forgetting would let whoever sent that key repeat it
    at once, and a sender could make it happen by sending enough other messages. (``add``
    itself never refuses: past ``limit`` adds held the ring, past 1.5 x ``limit`` keys the
    table, are copied twice as large, a pause the rule, which stops adding at ``limit``,
    does not meet.)
    """

    STEP = 1024                                 # adds that left the window, dropped a call
    MIX = secrets.randbits(64) | 1              # a key's slot: the top bits of key x MIX

    def __init__(self, window: float, limit: int = 1_000_000) -> None:
        self.window = window
        self.limit = limit
        self.refused = 0                        # sends refused because it was full
        self._count = 0                         # keys in the table
        self._shift = 64 - _bits(limit)         # a key's slot: the top bits of key x MIX
        self._mix = self.MIX
        self._table = _zeros("Q", 2 << _bits(limit))    # slot i: key at 2i, its add + 1 next
        self._ring = (1 << (limit - 1).bit_length()) - 1  # add n is at n & _ring in the ring:
        self._times = _zeros("d", self._ring + 1)   # its time,
        self._slots = _zeros("I", self._ring + 1)   # and 2 x its table slot
        self._head = self._tail = 0             # the adds held: _head <= n < _tail
        self._newest = float("-inf")            # the latest time added

    def __len__(self) -> int:
        """The keys held: those inside the window as of the last ``add``, and those that left
        it and are not dropped yet (at most ``STEP`` go a call)."""
        return self._count

    def seen(self, key, now: float) -> bool:
        if type(key) is not int or not 0 <= key <= _MOST:
            key = _as_key(key)
        added = self._table[self._find(key) + 1]
        return added != 0 and self._times[(added - 1) & self._ring] > now - self.window

    def full(self, now: float) -> bool:
        """Whether ``limit`` keys are inside the window. Exact: when the keys held reach
        ``limit``, those that left the window are dropped until they do not, or none is left."""
        if self._count < self.limit:
            return False
        self._forget(now, self.STEP)
        while self._count >= self.limit and self._forget(now, 1):
            pass
        return self._count >= self.limit

    def add(self, key, now: float) -> None:
        """Remember ``key`` as added at ``now``."""
        if type(key) is not int or not 0 <= key <= _MOST:
            key = _as_key(key)
        n = self._tail
        if n > self._head and self._times[self._head & self._ring] <= now - self.window:
            self._forget(now, self.STEP)        # (which may clear the table)
        at, table = self._find(key), self._table
        if not table[at + 1]:                   # else its older add is dropped unseen
            if 8 * self._count > 3 * len(table):
                self._grow()
                at, table = self._find(key), self._table
            self._count += 1
            table[at] = key
        if n - self._head > self._ring:
            self._widen()
        self._times[n & self._ring], self._slots[n & self._ring] = now, at
        table[at + 1] = n + 1
        self._tail = n + 1
        if now > self._newest:        # noqa: PLR1730 - max() would be a call a key
            self._newest = now

    def discard(self, key, at: float) -> None:
        """Forget ``key`` if it is still the one added at ``at``."""
        if type(key) is not int or not 0 <= key <= _MOST:
            key = _as_key(key)
        i = self._find(key)
        added = self._table[i + 1]
        if added and self._times[(added - 1) & self._ring] == at:
            self._free(i)

    def _find(self, key: int) -> int:
        """Where ``key`` is in the table (2 x its slot), else the empty slot where it would go."""
        table = self._table
        mask = len(table) - 1
        i = (key * self._mix & _MOST) >> self._shift << 1
        while table[i + 1] and table[i] != key:
            i = (i + 2) & mask
        return i

    def _forget(self, now: float, most: int) -> bool:
        """Drop at most ``most`` of the oldest adds if they left the window (the times come in
        order), or every add at once if the newest left it; whether one was dropped."""
        n, cutoff, ring = self._head, now - self.window, self._ring
        if self._newest <= cutoff and n < self._tail:
            self._clear()
            return True
        end, times, slots, table = min(self._tail, n + most), self._times, self._slots, self._table
        while n < end and times[n & ring] <= cutoff:
            if table[slots[n & ring] + 1] == n + 1:    # else added again since, or discarded
                self._free(slots[n & ring])
            n += 1
        dropped, self._head = n != self._head, n
        return dropped

    def _free(self, i: int) -> None:
        """Empty the slot at ``i``, moving back into it any later key of its run that may not
        stay where it is once the slot is empty (Knuth's Algorithm R): lookups never meet a
        gap."""
        table, slots, ring, shift = self._table, self._slots, self._ring, self._shift
        mask, later, mix = len(table) - 1, i, self._mix
        while True:
            later = (later + 2) & mask
            added = table[later + 1]
            if not added:
                break
            home = (table[later] * mix & _MOST) >> shift << 1
            if (later - home) & mask >= (later - i) & mask:     # home not in (i, later]
                table[i], table[i + 1], slots[(added - 1) & ring] = table[later], added, i
                i = later
        table[i + 1] = 0
        self._count -= 1

    def _clear(self) -> None:
        """Forget every add: fresh zeros (the old table unmapped, never zeroed)."""
        self._table = _zeros("Q", len(self._table))
        self._head, self._count = self._tail, 0

    def _grow(self) -> None:
        """A table twice as large, its keys inserted again (only past 1.5 x ``limit``)."""
        old, ring = self._table, self._ring
        self._shift -= 1
        self._table = table = _zeros("Q", 2 * len(old))
        for i in range(1, len(old), 2):
            if old[i]:
                at = self._slots[(old[i] - 1) & ring] = self._find(old[i - 1])
                table[at], table[at + 1] = old[i - 1], old[i]

    def _widen(self) -> None:
        """A ring twice as long (only past ``limit`` adds held): add n sits at n mod the old
        length, which is n mod the new one or that plus the old length, so each half of the
        new ring takes a copy of the old one."""
        self._ring = 2 * self._ring + 1
        for name in ("_times", "_slots"):
            old = getattr(self, name)
            new = _zeros(old.format, 2 * len(old))
            new[:len(old)] = new[len(old):] = old
            setattr(self, name, new)
