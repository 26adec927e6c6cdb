"""Extron SIS (Simple Instruction Set) for Extron matrix switchers.

The driver ``extron_sis`` controls CrossPoint, MAV, DXP, XTP, FOX and similar frames over
Telnet/TCP (port 23), SSH (port 22023) or a serial line (9600 8N1); ``tieline emulate
extron_sis`` runs the emulated switcher. See ``shared/protocols/extron-sis.md`` for the protocol
and docs/settings.md for the router settings.
"""

from __future__ import annotations

from tieline import hookimpl

from .driver import ExtronDriver
from .emulator import ExtronEmulator


@hookimpl
def tieline_router_drivers() -> list[type]:
    return [ExtronDriver]


@hookimpl
def tieline_emulators() -> list[type]:
    return [ExtronEmulator]
