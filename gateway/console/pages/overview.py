"""Overview: each channel's connections, SUBMIT_RESPs and status reports per minute, the mix
of final statuses per provider over the last hour and day, the backlog, and the callbacks
that are failing."""

from __future__ import annotations

from aiohttp import web

from gateway.status import DeliveryStatus

from .. import charts
from ..security import CONSOLE, render
from . import Section

SECTION = Section("overview", "/", "Overview")
FINAL = [s.value for s in DeliveryStatus if s.final]


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", overview)


def by_provider(finals: dict[tuple[str, str], float],
                providers: dict[str, str]) -> list[tuple[str, dict[str, float]]]:
    """Final statuses by (channel, status) summed per provider, providers by name."""
    mix: dict[str, dict[str, float]] = {}
    for (channel, status), count in finals.items():
        counts = mix.setdefault(providers.get(channel, channel), {})
        counts[status] = counts.get(status, 0) + count
    return sorted(mix.items())


async def overview(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    providers = {name: c.provider for name, c in console.config.channels.items()}
    rates = console.rates
    minutes = rates.per_minute(60)
    mixes = []
    for label, seconds in (("hour", 3600), ("day", 86400)):
        since, counts = rates.over(seconds)
        rows = by_provider(counts.finals, providers)
        mixes.append({"label": label, "since": since, "rows": rows, "callbacks": counts.callbacks,
                      "chart": charts.stacked(f"Final statuses per provider, last {label}",
                                              rows, FINAL) if rows else None})
    counts = console.store.counts_snapshot()
    return render("overview.html", request, {
        "section": SECTION.key, "title": SECTION.title,
        "channels": console.services.pools(),
        "submits": charts.bars("SUBMIT_RESPs per minute", [(t, s, p) for t, s, _, p in minutes],
                               "SUBMIT_RESPs"),
        "receipts": charts.bars("Status reports per minute",
                                [(t, r, p) for t, _, r, p in minutes], "reports"),
        "minutes": minutes, "mixes": mixes, "final": FINAL,
        "backlog": {"accepted": counts.get("accepted", 0),
                    "submitted": counts.get("submitted", 0),
                    "unmatched": console.store.unmatched_snapshot()},
        "waiting": await console.store.waiting_callbacks(),
        "started": rates.samples[0].at if rates.samples else console.clock()})
