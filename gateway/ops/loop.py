"""Which event loop runs the daemon: the standard library's asyncio loop, or uvloop's (libuv)
from the optional extra ``fast`` (``pip install 'cmpp-gateway[fast]'``).

The code is the same on either: everything is written for asyncio, and uvloop is a drop-in
loop. ``cmpp-gateway run --loop`` chooses: ``asyncio`` (the default: uvloop has not measured
faster end to end, see docs/operators.md), ``uvloop`` (an error when it is not installed) or
``auto`` (uvloop when it can be imported, else asyncio).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

CHOICES = ("auto", "asyncio", "uvloop")


class LoopUnavailable(RuntimeError):
    """``uvloop`` was asked for and cannot be imported."""


def loop_factory(choice: str = "asyncio") -> Callable[[], asyncio.AbstractEventLoop]:
    """The function that makes the event loop ``choice`` names (one of CHOICES);
    LoopUnavailable when it is ``uvloop`` and uvloop is not installed, ValueError for a
    name not in CHOICES."""
    if choice not in CHOICES:
        raise ValueError(f"event loop {choice!r}: choose one of {', '.join(CHOICES)}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise LoopUnavailable("the uvloop event loop is not installed: install the "
                                      "extra (pip install 'cmpp-gateway[fast]') or run with "
                                      "--loop asyncio") from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine, choice: str = "asyncio"):
    """``asyncio.run(main)`` on the loop ``choice`` names (see ``loop_factory``, whose
    errors it raises having closed ``main``)."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()                        # never to run: no "never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio``: what runs ``loop`` (the running one by default)."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"


def describe(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """The loop's name with its version, for the log line at start."""
    name = loop_name(loop)
    if name == "uvloop":
        import uvloop
        return f"uvloop {uvloop.__version__}"
    return "asyncio (standard library)"
