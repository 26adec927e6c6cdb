"""Pro-Bel / Snell SW-P-08 routers over TCP ("SW-P-08 over IP") and serial lines.

codec.py is the protocol (sans-I/O, both roles), driver.py the glue to tieline's device link,
emulator.py a router built on the codec's device role (``tieline emulate swp08``).
"""

from __future__ import annotations

from tieline import hookimpl

from .driver import SWP08Driver
from .emulator import SWP08Emulator


@hookimpl
def tieline_router_drivers() -> list[type]:
    return [SWP08Driver]


@hookimpl
def tieline_emulators() -> list[type]:
    return [SWP08Emulator]
