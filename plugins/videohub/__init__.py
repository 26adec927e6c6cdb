"""Blackmagic Videohub Ethernet Protocol: a driver for Videohub routers over TCP (port 9990)
and a Videohub emulator, both on the sans-I/O codec in codec.py.

``tieline emulate videohub --listen HOST:PORT`` serves the emulator on its own.
"""

from __future__ import annotations

from tieline import hookimpl

from .driver import VideohubDriver
from .emulator import VideohubEmulator


@hookimpl
def tieline_router_drivers() -> list[type]:
    return [VideohubDriver]


@hookimpl
def tieline_emulators() -> list[type]:
    return [VideohubEmulator]
