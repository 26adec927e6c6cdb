"""The demo settings folder that ``tieline run`` uses when given no settings.

A 32x32 two-level simulator router with labels and two salvos, the WebSocket API and the
web panel on 127.0.0.1:8181 (two panels: the router by groups, and a two-step bus panel),
and full rights for clients on loopback. It lives under
``$XDG_CONFIG_HOME/tieline/demo`` (default ``~/.config/tieline/demo``); an existing folder
is reused as it is, so labels and salvos changed in the demo survive restarts.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..settings.jsonfile import write_json_atomic

DEMO_LISTEN = "127.0.0.1:8181"

_SOURCES = (
    [f"CAM {i}" for i in range(1, 9)] + [f"VT {i}" for i in range(1, 5)]
    + ["GFX 1", "GFX 2", "CLOCK", "REMOTE 1", "REMOTE 2", "SAT 1", "SAT 2", "STUDIO B PGM"]
    + [f"SPARE IN {i}" for i in range(21, 31)] + ["BLACK", "BARS"]
)
_DESTINATIONS = (
    ["PGM", "PVW", "CLEAN", "REC 1", "REC 2", "STREAM"]
    + [f"MON {i}" for i in range(1, 11)] + ["MV 1", "MV 2", "MV 3", "MV 4", "TX 1", "TX 2"]
    + [f"SPARE OUT {i}" for i in range(23, 33)]
)


#: the web panel's panels (http://127.0.0.1:8181/): the router by groups as its labels go,
#: and a two-step bus panel for the feeds that leave the building
_PANELS = [
    {"name": "studio", "router": "studio",
     "destinations": [
         {"name": "Programme", "ports": "1-6", "colour": "#c0392b"},
         {"name": "Monitors", "ports": "7-16"},
         {"name": "Multiviewer", "ports": "17-20"},
         {"name": "Transmission", "ports": "21-22", "colour": "#b9770e"},
         {"name": "Spare", "ports": "23-32"}],
     "sources": [
         {"name": "Cameras", "ports": "1-8", "colour": "#2471a3"},
         {"name": "Playout", "ports": "9-12"},
         {"name": "Graphics", "ports": "13-15"},
         {"name": "Contribution", "ports": "16-20"},
         {"name": "Spare", "ports": "21-30"},
         {"name": "Test", "ports": "31-32"}]},
    {"name": "transmission", "router": "studio", "layout": "bus", "two_step_take": True,
     "destinations": [{"name": "Air and record", "ports": "1-6", "colour": "#c0392b"},
                      {"name": "Transmission", "ports": "21-22", "colour": "#b9770e"}]},
]


def demo_folder() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tieline" / "demo"


def ensure_demo(folder: Path | None = None) -> Path:
    """Create the demo folder unless it exists; return it."""
    folder = folder or demo_folder()
    if (folder / "tieline.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "users.json", {"users": []}, new_mode=0o600)
    write_json_atomic(folder / "labels.json", {"routers": {"studio": {
        "sources": {str(i + 1): name for i, name in enumerate(_SOURCES)},
        "destinations": {str(i + 1): name for i, name in enumerate(_DESTINATIONS)},
    }}})
    write_json_atomic(folder / "salvos.json", {"salvos": [
        {"name": "news", "router": "studio", "description": "Cameras 1-4 on the monitors, CAM 1 to air",
         "crosspoints": [{"destination": 1, "source": 1}, {"destination": 2, "source": 2}]
         + [{"destination": 6 + i, "source": i} for i in range(1, 5)]},
        {"name": "bars", "router": "studio", "description": "Bars on every recorder and transmission feed",
         "crosspoints": [{"destination": d, "source": 32} for d in (4, 5, 6, 21, 22)]},
    ]})
    write_json_atomic(folder / "tieline.json", {
        "node": {"name": "demo", "role": "standalone"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                     "sources": 32, "destinations": 32, "label_store": "settings",
                     "description": "in-process simulated 32x32 router"}],
        "apis": [{"type": "websocket", "listen": DEMO_LISTEN, "panels": _PANELS}],
        "auth": {"users_file": "users.json", "loopback_anonymous_level": 3},
    })
    return folder
