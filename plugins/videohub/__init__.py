"""Blackmagic Videohub Ethernet Protocol: a driver for Videohub routers over TCP (port 9990),
a Videohub emulator, and the Videohub TCP API (any Videohub client controls any router
tieline drives), all on the sans-I/O codec in codec.py.

``tieline emulate videohub --listen HOST:PORT`` serves the emulator on its own;
``{"type": "videohub", "listen": "0.0.0.0:9990", "router": "studio"}`` in ``apis`` serves a
router to Videohub clients.
"""

from __future__ import annotations

from tieline import hookimpl

from .api import VideohubApi
from .driver import VideohubDriver
from .emulator import VideohubEmulator


@hookimpl
def tieline_router_drivers() -> list[type]:
    return [VideohubDriver]


@hookimpl
def tieline_emulators() -> list[type]:
    return [VideohubEmulator]


@hookimpl
def tieline_client_apis() -> list[type]:
    return [VideohubApi]
