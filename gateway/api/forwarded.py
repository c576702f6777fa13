"""Who is calling, behind a reverse proxy: ``[api] trusted_proxies``.

A connection's peer is the client unless the peer is a trusted proxy (an address or CIDR
block of ``trusted_proxies``). From a trusted proxy, the client is read from
``X-Forwarded-For`` (every such header, in order, as one list): walking it from the right,
each proxy appends the address it got the request from, so the first address that is not a
trusted proxy is the client; whatever stands to its left was written by the client itself
and is never believed. An entry that is not an IP address ends the walk at the hop that wrote
it. From any other peer the header is ignored: a client cannot name itself.

The whitelist (50035), the connection limit per source address (a trusted proxy carries many
clients: only ``max_connections`` bounds it) and the API's log lines use this address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

CLIENT = web.RequestKey("client", str)      # the client's address, as described above


class TrustedProxies:
    """The ``trusted_proxies`` setting: networks whose forwarding is believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        ip = parse_ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded: list[str]) -> str:
        """The client's address: ``peer`` (the connection's), or, when it is a trusted proxy,
        the right-most address of the ``forwarded`` headers' values that is not one."""
        client = peer or "-"
        if not self.networks or not self.trusts(peer):
            return client
        hops = [hop.strip() for value in forwarded for hop in value.split(",")]
        for hop in reversed(hops):
            ip = parse_ip(hop)
            if ip is None:
                return client                   # unreadable: the last hop we could trust
            client = str(ip)
            if not any(ip in network for network in self.networks):
                return client
        return client


def parse_ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``value`` as an IP address (an IPv4-mapped IPv6 address as its IPv4 one); None when it
    is not one."""
    try:
        ip = ipaddress.ip_address(value or "")
    except ValueError:
        return None
    return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip
