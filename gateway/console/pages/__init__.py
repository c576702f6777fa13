"""The console's sections, one module each: ``overview``, ``apps``, ``reviews``, ``users``,
``messages`` (and ``send``, its test message), ``audit``, and ``login`` (signing in and
out). Each section module offers ``SECTION`` (its place in the navigation) and
``add_routes(router)``; the server lists them in ``gateway.console.server.PAGES``, so a new
section is one module and one entry there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    key: str
    path: str
    title: str
