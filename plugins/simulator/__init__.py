"""The simulator: an in-process router of any size, tieline's embedded default driver.

It speaks a small line protocol (codec.py) with a real device emulator (emulator.py), so it
runs through the same device link as every hardware driver; ``SimulatorEmulator.serve_tcp``
serves the same device over TCP, and ``tieline emulate simulator`` runs it on its own.
"""

from __future__ import annotations

from tieline import hookimpl

from .driver import SimulatorDriver
from .emulator import SimulatorEmulator


@hookimpl
def tieline_router_drivers() -> list[type]:
    return [SimulatorDriver]


@hookimpl
def tieline_emulators() -> list[type]:
    return [SimulatorEmulator]
