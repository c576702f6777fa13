"""A minimal pcap writer: each CMPP frame in its own TCP segment of one loopback stream, so
that a decoder nobody here wrote (Wireshark's tshark) can read what our codec encodes."""

from __future__ import annotations

import struct
from pathlib import Path

ETHERNET = 1


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _segment(payload: bytes, seq: int, sport: int, dport: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, 0x18, 65535, 0, 0)
    length = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 1, 0x4000, 64, 6, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    ethernet = bytes(6) + bytes(6) + struct.pack("!H", 0x0800)
    return ethernet + ip + tcp + payload


def write_pcap(path: str | Path, frames: list[bytes], port: int = 7890,
               client_port: int = 40000) -> None:
    """Write ``frames`` as consecutive client-to-server TCP segments to ``port``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, ETHERNET)]
    seq = 1000
    for i, frame in enumerate(frames):
        packet = _segment(frame, seq, client_port, port)
        seq += len(frame)
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(packet), len(packet)))
        out.append(packet)
    Path(path).write_bytes(b"".join(out))
