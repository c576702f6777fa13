"""The cyclic garbage collector, set for a daemon that runs for months at tens of thousands
of messages a second.

CPython collects its youngest generation after every 700 container objects allocated and
not yet freed, and each collection walks every young object still alive. A message in flight
lives for milliseconds to seconds (its request, its rows, its PDUs, its futures), so at the
default most of them are walked once or twice, and promoted to be walked again, before they
are freed by their reference counts anyway: at full speed that was a collection every few
hundred messages. Two changes make that cost nearly vanish without letting cyclic garbage
pile up:

- ``YOUNG`` objects before a young collection (the older generations keep CPython's ratios):
  what is still alive then is the few thousand objects truly in flight, and garbage in cycles
  waits at most that many allocations (a few MiB);
- ``settle``, once the gateway has started: a full collection, then ``gc.freeze``, so that
  what was built to start (modules, configuration, the apps, the pools) is never walked
  again by the collections of a long life. ``unsettle`` before a reload gives those objects
  back to the collector, so that the previous configuration's gateway can be freed.
"""

from __future__ import annotations

import gc

YOUNG = 20_000


def tune() -> None:
    """Collect the young generation every ``YOUNG`` allocations (the others as CPython does)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)


def settle() -> None:
    """After the start: collect everything once, then leave what survived out of every later
    collection (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def unsettle() -> None:
    """Before a reload: what ``settle`` froze is collectable again."""
    gc.unfreeze()
