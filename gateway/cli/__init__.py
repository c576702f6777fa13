"""The ``cmpp-gateway`` command line: one module per command (``run`` is the daemon's own, in
``gateway.daemon``; ``bench`` is the load tool's, in ``gateway.bench``).

Offers: main, build_parser.
"""

from .commands import build_parser, main

__all__ = ["build_parser", "main"]
