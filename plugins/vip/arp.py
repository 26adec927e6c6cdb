"""Gratuitous ARP frames (RFC 5227 §3 "ARP announcement"), pure.

A node that takes a virtual IP tells the LAN at once, so that switches learn the port and
hosts update their ARP cache instead of waiting for the old entry to expire: a broadcast ARP
request whose sender and target protocol address are both the virtual IP.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def parse_mac(text: str) -> bytes:
    """``"8e:d3:01:02:03:04"`` -> 6 bytes."""
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def announcement(mac: bytes, address: str) -> bytes:
    """The Ethernet frame announcing that ``address`` (IPv4) is at ``mac``, padded to the
    60-byte minimum."""
    if len(mac) != 6:
        raise ValueError("a MAC address has 6 bytes")
    ip = ipaddress.IPv4Address(address).packed
    ethernet = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\0" * 6, ip)
    return (ethernet + arp).ljust(60, b"\0")


def parse(frame: bytes) -> tuple[int, bytes, str, str] | None:
    """(operation, sender MAC, sender IP, target IP) of an ARP frame, or None."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    _htype, ptype, hlen, plen, oper, sha, spa, _tha, tpa = struct.unpack(
        "!HHBBH6s4s6s4s", frame[14:42])
    if ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    return oper, sha, str(ipaddress.IPv4Address(spa)), str(ipaddress.IPv4Address(tpa))
