"""Write docs/api.md, the WebSocket API reference, from the JSON Schemas in ``schemas/api/``.

::

    python docs/gen_api_reference.py           # rewrite docs/api.md
    python docs/gen_api_reference.py --check   # exit 1 if docs/api.md is out of date

The field tables, the list of message types, the permission levels (``x-permission-level``)
and the list of error codes come from the schemas, read through :mod:`tieline.settings.catalog` (the
schemas of the installed tieline). What no schema says is kept here: the introduction, the
meaning of each error code, the shape of each result, the event kinds, and the examples.

The examples are not made up: ``tests/unit/test_docs.py`` starts a real node with
:data:`EXAMPLE_SETTINGS`, sends every request of :data:`EXAMPLE_FLOW` in order over one
connection and requires each response, and the events of :data:`EXAMPLE_EVENTS`, to be
exactly what is written here. The same test fails when docs/api.md differs from what
:func:`render` produces, so a schema change must be followed by running this script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from tieline.settings import catalog

OUTPUT = Path(__file__).resolve().with_name("api.md")
COMMAND = "python docs/gen_api_reference.py"

LEVEL_NAMES = {0: "none", 1: "watch", 2: "route", 3: "administer"}


class Incomplete(Exception):
    """A schema has something this script cannot document yet; the message says what to add."""


#: Requests in reading order; types not listed here follow, sorted.
REQUEST_ORDER = ["hello", "ping", "status", "snapshot", "subscribe", "unsubscribe", "panels",
                 "route", "salvo", "protect", "lock", "release", "label", "failover",
                 "members"]

# -------------------------------------------------------------------------------------------
# The node the examples come from
# -------------------------------------------------------------------------------------------

#: alice's token in the examples (a real token is 43 random URL-safe characters too).
EXAMPLE_TOKEN = "x7Qm2VfJr9TcL0aKpW4sYdE8uNbHgZ1oR5iC3tXvM6w"

#: The settings folder of the node every example was taken from (``listen`` port 0: any).
EXAMPLE_SETTINGS: dict[str, Any] = {
    "tieline.json": {
        "node": {"name": "mcr-1"},
        "routers": [{
            "id": "studio", "driver": "simulator", "levels": ["video", "audio"],
            "sources": 8, "destinations": 4, "label_store": "settings",
        }],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0", "panels": [{
            "name": "MCR", "router": "studio", "two_step_take": True,
            "destinations": [{"name": "Air", "ports": "1-2", "colour": "#c0392b"},
                             {"name": "Record", "ports": [3, 4]}],
            "sources": [{"name": "Cameras", "ports": "1-3"},
                        {"name": "Playout", "ports": "4-5,7-8"}],
        }]}],
        "auth": {"users_file": "users.json"},
    },
    "users.json": {"users": [{
        "name": "alice", "level": 3,
        "token_sha256": hashlib.sha256(EXAMPLE_TOKEN.encode()).hexdigest(),
    }]},
    "labels.json": {"routers": {"studio": {
        "sources": {"1": "CAM 1", "2": "CAM 2", "3": "CAM 3", "4": "VT 1", "5": "GFX",
                    "6": "CLOCK", "7": "BLACK", "8": "BARS"},
        "destinations": {"1": "PGM", "2": "PVW", "3": "REC", "4": "MON"},
    }}},
    "salvos.json": {"salvos": [{
        "name": "news", "router": "studio",
        "description": "CAM 1 to air, CAM 2 to preview, CAM 3 to the monitor",
        "crosspoints": [{"destination": 1, "source": 1}, {"destination": 2, "source": 2},
                        {"destination": 4, "source": 3}],
    }]},
}

_STATUS = {"node": "mcr-1", "role": "standalone", "state": "active",
           "status": "Standalone is active", "epoch": 0, "active": None}

#: What the server sends first (``server`` carries the running version).
SERVER_HELLO_EXAMPLE: dict[str, Any] = {
    "type": "hello", "protocol": 1, "server": "tieline/0.1.0", "node": _STATUS,
    "heartbeat_ms": 500, "heartbeat_timeout_ms": 1500, "max_message_bytes": 1048576,
}


def _ok(request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response", "id": request_id, "ok": True, "result": result}


def _error(request_id: Any, **error: Any) -> dict[str, Any]:
    return {"type": "response", "id": request_id, "ok": False, "error": error}


#: One connection's conversation, in order: (request, response). The reference shows the
#: first successful exchange of each type; error responses are shown under "Errors".
EXAMPLE_FLOW: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"type": "status", "id": 0},
     _error(0, code="unauthenticated", message="send hello with a token first")),
    ({"type": "hello", "id": 1, "protocol": 1, "token": EXAMPLE_TOKEN, "client": "example-panel"},
     _ok(1, {"user": {"name": "alice", "level": 3}, "node": _STATUS})),
    ({"type": "ping", "id": 2}, _ok(2, {})),
    ({"type": "status", "id": 3},
     _ok(3, {**_STATUS, "routers": [{"id": "studio", "online": True}], "peers": []})),
    ({"type": "snapshot", "id": 4, "routers": ["studio"]},
     _ok(4, {
         "routers": [{
             "id": "studio", "driver": "simulator", "online": True,
             "levels": ["video", "audio"], "sources": 8, "destinations": 4,
             "labels": {
                 "sources": ["CAM 1", "CAM 2", "CAM 3", "VT 1", "GFX", "CLOCK", "BLACK", "BARS"],
                 "destinations": ["PGM", "PVW", "REC", "MON"],
             },
             "crosspoints": {"video": [1, 2, 3, 4], "audio": [1, 2, 3, 4]},
             "protects": [],
         }],
         "salvos": [{"name": "news", "router": "studio", "crosspoints": 6, "contents": [
             {"level": level, "destination": d, "source": src}
             for d, src in ((1, 1), (2, 2), (4, 3)) for level in ("video", "audio")]}],
     })),
    ({"type": "lock", "id": 5, "router": "studio", "destination": 4, "levels": ["audio"]},
     _ok(5, {})),
    ({"type": "salvo", "id": 6, "name": "news"},
     _ok(6, {
         "name": "news", "router": "studio",
         "taken": [
             {"level": "video", "destination": 1, "source": 1},
             {"level": "audio", "destination": 1, "source": 1},
             {"level": "video", "destination": 2, "source": 2},
             {"level": "audio", "destination": 2, "source": 2},
             {"level": "video", "destination": 4, "source": 3},
         ],
         "refused": [
             {"level": "audio", "destination": 4, "source": 3, "code": "protected",
              "reason": "router 'studio': destination 4 (MON) on level audio is locked by alice"},
         ],
     })),
    ({"type": "subscribe", "id": 7, "snapshot": False}, _ok(7, {})),
    ({"type": "route", "id": 8, "router": "studio", "destination": 3, "source": 5},
     _ok(8, {"crosspoints": [{"level": "video", "destination": 3, "source": 5},
                             {"level": "audio", "destination": 3, "source": 5}]})),
    ({"type": "route", "id": 9, "router": "studio", "destination": 4, "source": 8,
      "levels": ["audio"]},
     _error(9, code="protected",
            message="router 'studio': destination 4 (MON) on level audio is locked by alice",
            field="destination", owner="alice")),
    ({"type": "release", "id": 10, "router": "studio", "destination": 4, "levels": ["audio"]},
     _ok(10, {})),
    ({"type": "protect", "id": 11, "router": "studio", "destination": 1}, _ok(11, {})),
    ({"type": "label", "id": 12, "router": "studio", "kind": "source", "index": 5,
      "text": "GFX 1"},
     _ok(12, {})),
    ({"type": "route", "id": 13, "router": "studio", "destination": 9, "source": 1},
     _error(13, code="out_of_range",
            message="router 'studio': destination 9 out of range (1–4)", field="destination")),
    ({"type": "route", "id": 14, "router": "studio", "destination": 2},
     _error(14, code="invalid", message="'route': missing required field 'source'",
            field="source")),
    ({"type": "salvo", "id": 15, "name": "weather"},
     _error(15, code="not_found", message="no salvo 'weather'; salvos: news", field="name")),
    ({"type": "unsubscribe", "id": 16}, _ok(16, {})),
    ({"type": "failover", "id": 17, "action": "switch_back"},
     _error(17, code="invalid", message="node 'mcr-1' is standalone: it has no failover "
            "strategy", field="type")),
    ({"type": "members", "id": 18, "action": "add", "address": "10.0.0.3:7401"},
     _error(18, code="invalid", message="node 'mcr-1' is standalone: it has no failover "
            "strategy", field="type")),
    ({"type": "panels", "id": 19},
     _ok(19, {"panels": [{
         "name": "MCR", "router": "studio", "layout": "xy", "two_step_take": True,
         "levels": ["video", "audio"],
         "destinations": [{"name": "Air", "ports": [1, 2], "colour": "#c0392b"},
                          {"name": "Record", "ports": [3, 4], "colour": None}],
         "sources": [{"name": "Cameras", "ports": [1, 2, 3], "colour": None},
                     {"name": "Playout", "ports": [4, 5, 7, 8], "colour": None}],
     }]})),
]

#: Exchanges with the main of a lease cluster (the standalone example node above answers
#: these requests with `invalid`); tests/failover exercises them on real clusters.
CLUSTER_EXAMPLES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"type": "failover", "id": 21, "action": "switch_back"},
     _ok(21, {"switched": True, "epoch": 7})),
    ({"type": "members", "id": 22, "action": "add", "address": "10.0.0.3:7401"},
     _ok(22, {"peers": ["10.0.0.2:7401", "10.0.0.3:7401"]})),
]

#: The events the connection above receives (it subscribes at id 7), in order.
EXAMPLE_EVENTS: list[dict[str, Any]] = [
    {"type": "event", "event": "crosspoints", "router": "studio",
     "crosspoints": [{"level": "video", "destination": 3, "source": 5},
                     {"level": "audio", "destination": 3, "source": 5}]},
    {"type": "event", "event": "protect", "router": "studio", "level": "audio",
     "destination": 4, "protect": None},
    {"type": "event", "event": "protect", "router": "studio", "level": "video",
     "destination": 1, "protect": {"kind": "protect", "owner": "alice"}},
    {"type": "event", "event": "protect", "router": "studio", "level": "audio",
     "destination": 1, "protect": {"kind": "protect", "owner": "alice"}},
    {"type": "event", "event": "labels", "router": "studio", "kind": "source",
     "labels": [{"index": 5, "text": "GFX 1"}]},
]

#: Events the flow cannot provoke; checked against the event schema only.
OTHER_EVENT_EXAMPLES: list[dict[str, Any]] = [
    {"type": "event", "event": "device", "router": "studio", "online": False,
     "reason": "no data from the device for 6 s (half-open connection or hung device)"},
    {"type": "event", "event": "device", "router": "studio", "online": True},
    {"type": "event", "event": "status", "status": {
        "node": "mcr-2", "role": "backup", "state": "active", "status": "Backup is active",
        "epoch": 8, "active": None}},
    {"type": "event", "event": "salvos", "names": ["news", "weather"]},
]

HEARTBEAT_EXAMPLE: dict[str, Any] = {"type": "heartbeat", "seq": 41}

# -------------------------------------------------------------------------------------------
# What no schema says
# -------------------------------------------------------------------------------------------

#: Every code of response.schema.json's ``error.code``: when it happens, what to do.
ERROR_CODES: dict[str, str] = {
    "invalid": "The message is not JSON, is not an object, has an unknown `type`, fails its "
               "schema, holds a value no request can use (see [Reading "
               "messages](#reading-messages)), asks for a newer protocol, or the connection "
               "already has 256 requests waiting for a router. `field` names the offending "
               "field. The connection stays open. Fix the request.",
    "not_found": "No such router, level, salvo or labelled port (`field` says which).",
    "out_of_range": "A destination, source or port number outside the router's size "
                    "(the message gives the range, e.g. `(1–32)`).",
    "unauthenticated": "No `hello` yet, an unknown token, or no token where anonymous access "
                       "is not allowed. The connection stays open: send `hello` again.",
    "forbidden": "The user's permission level is too low; the message names the level "
                 "needed.",
    "protected": "A protect or lock held by someone else (or any lock, yours included) stands "
                 "in the way; the message names the owner.",
    "refused": "The router or a policy plugin refused the request; the message gives the "
               "reason.",
    "offline": "The router's link is down: the request was not sent. Or the link went down "
               "while waiting: the request may or may not have been made, so check the tally.",
    "timeout": "The router did not confirm within the router's `confirm_timeout_ms`; it may "
               "have refused silently or the link may be slow. Check the tally.",
    "standby": "This node is standby and takes no writes; `active` names the active node's "
               "WebSocket URL when known. The request was not carried out: send it there "
               "(see [Several nodes: failover](#several-nodes-failover)). An active node that "
               "cannot confirm its role at this moment (handing over, or its lease not yet "
               "renewed) answers the same way: retry shortly.",
    "read_only": "Settings may not be written now (a backup is active); labels kept in "
                 "settings cannot be changed.",
    "not_saved": "A settings file (labels, salvos, users, members) could not be written: "
                 "a full disk, a read-only filesystem. The message names the file and the "
                 "reason; nothing changed, neither on disk nor in the node. Free space, "
                 "then send the request again.",
    "error": "An internal error in tieline or in a plugin command (a bug: the message names "
             "the exception). Only that request failed.",
}

#: The ``result`` of a successful response, by request type (Markdown).
RESULTS: dict[str, str] = {
    "hello": "`user` (`name`, `level`: who the token belongs to; an anonymous loopback "
             "client is `anonymous@ADDRESS`) and `node` (the node's status, as in the "
             "server's `hello`).",
    "ping": "Empty.",
    "status": "The status of the node asked, as it sees itself (a standby answers for "
              "itself: `Backup is idle`), with `node`, `role`, `state`, `status`, `epoch`, "
              "`active`; `routers`: one `{id, online}` per router; and `peers`: the other "
              "nodes of its cluster as its failover strategy knows them (empty when it has "
              "none), each `{address, url, node, role, state, status, epoch, connected, "
              "heard_ms_ago, problem}`. `address` is where the strategy knows the peer "
              "from (its peer link `HOST:PORT`; with etcd, its `members/<node>` key); "
              "`url` its advertised WebSocket URL (null until heard); `role`, `state`, "
              "`status` and `epoch` are as last heard (null, or 0, until then); "
              "`connected` whether the peer is reachable for the strategy now (peer link "
              "up; with etcd, its member key present); `heard_ms_ago` the age, in ms, of "
              "the last heartbeat this node received from it (with etcd: since this node "
              "last saw its member key; null: never); `problem` is null or says what is "
              "wrong, a key dispute say (the peer refuses this node's cluster key, or this "
              "node its). `tieline status --cluster` builds its table from this.",
    "snapshot": "`routers`: one object per router (all routers, or those asked for) with "
                "`id`, `driver`, `online`, `levels`, `sources`, `destinations`, "
                "`labels.sources` and `labels.destinations` (one string per port, in port "
                "order), `crosspoints` (per level name, one entry per destination: see "
                "[Numbers, levels and the snapshot](#numbers-levels-and-the-snapshot)) and "
                "`protects` (one `{level, destination, kind, owner}` per protected or locked "
                "destination and level). `salvos`: one `{name, router, crosspoints, "
                "contents}` per salvo, `crosspoints` counting (destination, level) pairs and "
                "`contents` listing them, each `{level, destination, source}` (what a "
                "panel previews against the tally before a take).",
    "subscribe": "The same object as `snapshot`'s result, taken at the instant the "
                 "subscription started; empty when `snapshot` is false. Subscribing twice "
                 "keeps one subscription.",
    "unsubscribe": "Empty.",
    "panels": "`panels`: the operator panels of the API's `panels` setting, in its order, or "
              "one per router (named after it) when there is none. Every default is filled "
              "in: each panel has `name`, `router`, `layout` (`xy` or `bus`), "
              "`two_step_take` (boolean), `levels` (level names), and `destinations` and "
              "`sources`: groups in the order shown, each `{name, ports, colour}`, `ports` "
              "the 1-based port numbers in ascending order (a range string of the settings "
              "expanded), `colour` `#rrggbb` or null (the panel's own). See "
              "[settings.md](settings.md#websocket-api-apis-type-websocket).",
    "route": "`crosspoints`: the crosspoints the router confirmed, one per level "
             "(`level`, `destination`, `source`), each confirmed by a report the router "
             "sent after this route's own command reached it. Two clients routing one "
             "destination at the same moment each get the router's answer to their own "
             "route: tieline sends the two one after the other, in the order it received "
             "them, and the last write wins at the device (see "
             "[Life of a route](life-of-a-route.md)).",
    "salvo": "`name`, `router`, `taken` (the crosspoints the router confirmed) and `refused` "
             "(every crosspoint not made, each with `code` and `reason`: a protect in the "
             "way, a policy refusal, or no confirmation in time). The response is `ok` even "
             "when some crosspoints were refused; the `tieline salvo` command exits 1 then.",
    "protect": "Empty, once the protect is in place (confirmed by the router when the "
               "router holds protects itself).",
    "lock": "Empty, once the lock is in place (confirmed by the router when the router "
            "holds locks itself).",
    "release": "Empty, once released. Releasing a destination that holds nothing is not an "
               "error.",
    "label": "Empty, once the label is stored: confirmed by the router, or written to "
             "labels.json for a router whose `label_store` is `settings`.",
    "failover": "For `switch_back`: `switched` (whether the main is active now), `epoch`, "
                "or `reason` when nothing was done (the main is already active; no backup "
                "is active). Sent to a backup, the request is passed on to the main. A "
                "standalone node answers `invalid`.",
    "members": "`peers`: the main's peer list after the change. Only the main changes "
               "members (a backup answers `read_only` naming the main), and not while a "
               "backup is active. A standalone node answers `invalid`.",
}

#: Descriptions of server-message fields whose schema gives none, by (message, field path).
SERVER_FIELD_NOTES: dict[tuple[str, str], str] = {
    ("hello", "type"): "Always `\"hello\"`.",
    ("hello", "node"): "The node's status when the connection opened.",
    ("hello", "node.node"): "The node's name (`node.name` in its settings).",
    ("hello", "node.role"): "The node's role from its settings.",
    ("hello", "node.state"): "`active` (takes writes) or `standby` (read-only).",
    ("hello", "node.status"): "The status line people see, e.g. `Standalone is active`, "
                              "`Backup is active`.",
    ("hello", "node.epoch"): "Failover fencing number; it only goes up.",
    ("hello", "node.active"): "The active node's WebSocket URL, when this node is standby and "
                              "knows it; else null.",
    ("heartbeat", "type"): "Always `\"heartbeat\"`.",
    ("heartbeat", "seq"): "Counts heartbeats on this connection, from 1.",
    ("response", "type"): "Always `\"response\"`.",
    ("response", "id"): "The request's `id`; null when the request had none or could not "
                        "be read.",
    ("response", "ok"): "true: `result` is present; false: `error` is present.",
    ("response", "result"): "What the request returns (see each request below).",
    ("response", "error"): "Why the request was refused.",
    ("response", "error.code"): "Stable, for programs: see [Errors](#errors).",
    ("response", "error.message"): "For people: names the thing, the expectation and the fix.",
    ("response", "error.field"): "The request field at fault (a dotted path), when one is.",
    ("response", "error.owner"): "With `protected`: who holds the protect or lock.",
    ("response", "error.active"): "With `standby`: the active node's WebSocket URL, or null.",
    ("event", "type"): "Always `\"event\"`.",
    ("event", "event"): "Which change: see the table of event kinds.",
    ("event", "router"): "The router's id (every kind except `status` and `salvos`).",
    ("event", "crosspoints"): "`crosspoints`: the crosspoints that changed, in the order the "
                              "router reported them.",
    ("event", "crosspoints[].level"): "Level name.",
    ("event", "crosspoints[].destination"): "1-based destination.",
    ("event", "crosspoints[].source"): "1-based source now feeding it; null when unknown.",
    ("event", "kind"): "`labels`: which ports.",
    ("event", "labels"): "`labels`: the labels that changed.",
    ("event", "labels[].index"): "1-based port number.",
    ("event", "labels[].text"): "The new label (empty when cleared).",
    ("event", "level"): "`protect`: the level name.",
    ("event", "destination"): "`protect`: the 1-based destination.",
    ("event", "protect"): "`protect`: the protect or lock now held, or null when released.",
    ("event", "protect.kind"): "`protect` or `lock`.",
    ("event", "protect.owner"): "Who holds it (a user name).",
    ("event", "online"): "`device`: whether the router's link is up and its state read.",
    ("event", "reason"): "`device` going offline: why, in words.",
    ("event", "status"): "`status`: the node's new status (same fields as `node` in the "
                         "server's `hello`).",
    ("event", "status.node"): "The node's name.",
    ("event", "status.role"): "The node's role.",
    ("event", "status.state"): "`active` or `standby`.",
    ("event", "status.status"): "The status line people see.",
    ("event", "status.epoch"): "Failover fencing number.",
    ("event", "status.active"): "The active node's WebSocket URL when this node is standby, or "
                                "null.",
    ("event", "names"): "`salvos`: the names of every salvo now defined.",
}

#: Event kinds (``event`` field): when they are sent and the fields they carry.
EVENT_KINDS: dict[str, tuple[str, list[str]]] = {
    "crosspoints": ("The router reported new sources for some crosspoints: a route made "
                    "through tieline, from a hardware panel or by another controller. Only "
                    "real changes are sent.", ["router", "crosspoints"]),
    "labels": ("Port labels changed.", ["router", "kind", "labels"]),
    "protect": ("A protect or lock was set or released on one destination of one level "
                "(one event per level).", ["router", "level", "destination", "protect"]),
    "device": ("A router's link came up (its whole state has been read) or went down.",
               ["router", "online", "reason"]),
    "status": ("The node's role, state, epoch or status text changed (failover).",
               ["status"]),
    "salvos": ("The set of salvos changed.", ["names"]),
}

INTRO = """\
tieline serves a JSON API over WebSocket: one JSON object per text frame, in both
directions. The Python client (`tieline.client.Client`) and the `tieline` command use
it. An `apis` entry of type `websocket` in the settings turns it on (see
[settings.md](settings.md#websocket-api-apis-type-websocket)); the demo serves it on
`ws://127.0.0.1:8181`.

## Connecting

1. The client opens `ws://HOST:PORT/` (or `wss://` when the API has `tls`). Any path is
   accepted: a request carrying `Upgrade: websocket` is the API, any other is for the web
   panel served on the same address (see [The web panel](#the-web-panel)). A handshake
   from a web page (one with an `Origin` header) is refused unless the origin is allowed
   (see [Web pages and the `Origin` header](#web-pages-and-the-origin-header)).
2. The server sends its [`hello`](#hello-1) at once: protocol version, the node's status,
   the heartbeat timing and the largest message it accepts.
3. The client sends its own [`hello`](#hello) with `protocol` 1 and its `token`. Until that
   succeeds every other request is answered with the error `unauthenticated`; a failed
   `hello` leaves the connection open, and `hello` may be sent again to change user.
   A client on the loopback interface may leave `token` out when the settings give
   `auth.loopback_anonymous_level` above 0 (a web page only when it was opened at a
   loopback address or `localhost`).
4. The client sends requests. Each carries a `type` and, to match its answer, an `id`
   (any integer or string). The server answers each request with exactly one
   [`response`](#response) holding the same `id`: `ok` true with a `result`, or `ok` false
   with an `error`.
5. To follow changes, the client sends [`subscribe`](#subscribe). Its result is a snapshot
   of the whole state taken at the instant the subscription started; from then on every
   change arrives as an [`event`](#event), none missed and none counted twice. Apply
   events on top of that snapshot.

Requests that may wait for a router or a peer (`route`, `salvo`, `protect`, `lock`,
`release`, `label`, `failover`, `members` and plugin commands) run concurrently, so a slow
router never delays a `ping`: responses can arrive in a different order from the requests,
and the event of a change can arrive before or after the response of the request that made
it. Match responses by `id`. A connection may have at most 256 requests waiting for a
router; while it has, more of those are refused with `invalid` ("too many requests in
flight"). A request refused before it reaches the router (not permitted, out of range …)
holds no place. Requests that wait for no router (`hello`, `ping`, `status`, `snapshot`,
`subscribe`, `unsubscribe`, `panels`) are never refused this way: they are answered in the order
they came, and a client that sends many without reading the responses is simply not read
until it does.

Example conversation (`>` client, `<` server):

```
< {"type":"hello","protocol":1,"server":"tieline/0.1.0","node":{...},"heartbeat_ms":500,...}
> {"type":"hello","id":1,"protocol":1,"token":"x7Qm2VfJ…","client":"example-panel"}
< {"type":"response","id":1,"ok":true,"result":{"user":{"name":"alice","level":3},"node":{...}}}
> {"type":"subscribe","id":2}
< {"type":"response","id":2,"ok":true,"result":{"routers":[...],"salvos":[...]}}
> {"type":"route","id":3,"router":"studio","destination":3,"source":5}
< {"type":"event","event":"crosspoints","router":"studio","crosspoints":[...]}
< {"type":"response","id":3,"ok":true,"result":{"crosspoints":[...]}}
< {"type":"heartbeat","seq":1}
```

## Permission levels

Each user has a permission level; each level includes the ones below it.

| level | name | may |
|---|---|---|
| 0 | none | send `hello` only |
| 1 | watch | `ping`, `status`, `snapshot`, `subscribe`, `unsubscribe`, `panels` |
| 2 | route | also `route`, `salvo`, `protect`, `lock`, `release` of one's own protects and locks |
| 3 | administer | also `label`, and `release` with `force` of someone else's protect or lock |

The level each request needs is given with the request below (the schema keyword
`x-permission-level`). A request above the user's level is refused with `forbidden`.

## The router is the source of truth

A `route` is answered only after the router's own tally reported the new source on every
level asked for; `protect`, `lock`, `release` and `label` wait likewise for the router's
report when the router holds protects or labels itself. No report within the router's
`confirm_timeout_ms` (default 2000 ms) is the error `timeout`, and the route may or may not
have been made: the tally (a `crosspoints` event, or a new `snapshot`) says. tieline never
sends a router routes it remembers; it reads the router's state after every (re)connect.

## Numbers, levels and the snapshot

- Destinations, sources and label indexes are **1-based** everywhere in the API, as on
  router panels: destination 1 is the first output.
- Levels are named, with the names of the router's `levels` setting (`"video"`,
  `"audio"` …). A request without `levels` acts on every level of the router.
- In a snapshot, `crosspoints` holds one array per level name, with one entry per
  destination: `crosspoints[level][d]` is the 1-based source feeding destination `d + 1`,
  or `null` while the router has not said (the link has not read it yet). For a 4-output
  router, `"video": [1, 2, 3, 4]` means destination 1 ← source 1 … destination 4 ← source 4.
- `labels.sources[i]` and `labels.destinations[i]` are the labels of port `i + 1`.
- While a router is offline (`online` false) the snapshot keeps the last tally heard from
  it; requests to it fail with `offline`.

## Heartbeats and detecting a dead server

The server sends [`heartbeat`](#heartbeat) every `heartbeat_ms` (a third of
`heartbeat_timeout_ms`, at least 100 ms), whatever else it sends. Both values are in the
server's `hello`. A client should treat the server as dead after `heartbeat_timeout_ms`
without any message (default 1500 ms; the Python client does), close the connection and
connect again, to its next endpoint when it knows several; there it sends `hello` and
`subscribe` again and starts from the new snapshot. A request whose response never came
may or may not have been carried out: check the snapshot before repeating anything that is
not idempotent. Clients need not send heartbeats.

## Several nodes: failover

In a cluster one node is **active** (it takes writes) and the others are **standby**: they
answer reads and `subscribe`, and refuse writes with the error `standby`. The server's
`hello`, the `status` result and the `status` event give the node's `state`, its `epoch`
(a fencing number that only goes up across the cluster) and, on a standby that knows it,
`active`: the active node's WebSocket URL, as clients reach it. A `standby` error carries
the same `active`. The `state` never claims more than the node would do: a node that may
not act at this instant (it was paused, and has not yet confirmed that it still holds the
role) says `standby`, with no `active`, even if it was active before. A client that holds
several endpoints should:

1. **Prefer the active node.** When the `hello` says `standby` and names `active`, connect
   there (adding it to the endpoints when new); else try the other endpoints. Stay on a
   standby only when no active node answers: reads work there.
2. **Never obey a node that is behind.** Remember the highest `epoch` any node announced,
   across reconnects. A node announcing a lower one (left behind by a failover) is not
   authoritative: do not use it, send it no writes, and leave it if a `status` event shows
   it behind.
3. **Move on when the node dies or turns standby.** After `heartbeat_timeout_ms` of silence,
   a closed connection, a `status` event saying `standby`, or a `standby` error: go to the
   `active` node named (else the next endpoint), retrying with a short backoff for a bounded
   time; there send `hello` and `subscribe` again and start from the new snapshot.
4. **Retry what was not acknowledged, and only that.** A request that got its response
   (`ok`, or any error but `standby`) is done: never send it again. A write refused with
   `standby` was not carried out: send it to the active node. A request whose response never
   came may or may not have been carried out: send it again on the new node only when it is
   idempotent (every built-in request is: `route`, `salvo`, `protect`, `lock`, `release`,
   `label`, `ping`, `status`, `snapshot`, `subscribe`, `unsubscribe`, `panels`; doing one
   twice leaves what doing it once does), and only soon after it was asked (a route made
   long after the operator asked for it surprises them). Plugin commands are not retried.

The Python client does all of this: `Client(["ws://mcr-1:8181", "ws://mcr-2:8181"],
token=..., failover=True, failover_timeout_s=10, retry_window_s=5)` (the defaults). After
losing a node it looks for another for at most `failover_timeout_s`, then closes. It sends a
request again only within `retry_window_s` of the call, and not once three connections were
lost under it; while only a standby answers, it holds the writes the standby refused and
tries again, at once when the node announces it is active. A request it could not complete
raises `ConnectionLost` (a held write: the standby's `NodeStandby` error). It subscribes
again by itself, refreshes its mirror from the new snapshot, and gives listeners three
events of its own (the server never sends them): `{"event": "disconnected", "endpoint",
"reason"}`, `{"event": "reconnected", "endpoint", "previous", "reason", "node",
"resubscribed"}`, and `{"event": "closed", "reason"}` when it gives up. The `tieline`
command uses the Python client: with `--server ws://mcr-1:8181,ws://mcr-2:8181`, a
`tieline route` lands on the active node.

A monitoring tool that wants *one node's own* view (is this backup idle?) does not move:
it connects to that node, reads `status`, and leaves, whatever the node's `state` and
`epoch`. The Python client does so with `Client(url, follow_active=False)`, and
`tieline status` reads that way: `--server URL` shows that node, `--server URL,URL` or
`--cluster` every member as a table.

## Reading messages

Each message is read strictly, and anything wrong with it is answered with the error
`invalid` naming the field at fault; the connection stays open. Beyond what the schemas
below say:

- An `integer` is a JSON number without a fraction or exponent: `3.0` is not one, so write
  `3`. An integer may have at most 100 digits.
- `NaN`, `Infinity` and `-Infinity` are not JSON and are refused, as is a number too large
  for a double (`1e999`).
- Text must be Unicode: a string or key holding a lone surrogate escape (`"\\ud800"` without
  its pair) is refused; it could be stored nowhere, in a file or on a router.
- A key may appear only once in an object.

## Errors

An error response carries `error.code` (stable, for programs), `error.message` (for
people: names the thing, the expectation and the fix) and, when one field of the request is
at fault, `error.field` (a dotted path such as `destination` or `levels.0`). A `standby`
error adds `active`. A message that cannot be read at all is answered with `id` null.

{ERROR_EXAMPLE}

| code | meaning |
|---|---|
{ERROR_TABLE}

## Limits and closing codes

- A client message larger than `max_message_bytes` (default 1 MiB; in the server's `hello`)
  closes the connection with WebSocket close code **1009** (message too big). The server's
  own messages are not limited: a snapshot of a large router can be several megabytes, so
  clients should not cap the size of incoming messages.
- Events wait in a queue of `subscriber_queue` events per client (default 4096). A client
  that does not read them fast enough is disconnected at once by cutting its TCP connection
  (no close frame: one would wait behind everything already queued for that client), and
  what was queued for it is dropped. It does not slow the router or the other clients.
  Reconnect and subscribe again: the new snapshot replaces what was missed.
- At most 256 requests of one connection may wait for a router at once (see
  [Connecting](#connecting)).
- When the node stops, every connection is closed with close code **1001** (going away);
  a connection whose client does not read is cut after 3 s.
- Binary frames are refused with `invalid`; send text frames. A text frame that is not
  UTF-8 closes the connection with close code **1007**, as the WebSocket protocol requires.

## The web panel

The API's address serves the operator's web panel too: open `http://HOST:PORT/`
(`https://` with `tls`) in a browser. A request without `Upgrade: websocket` gets a file:
`GET /` the panel's page, `GET /panel/<path>` its scripts, styles and images; anything
else is answered 404 (no directory listing; `/../`, encoded dots or slashes, backslashes
and symbolic links never reach a file outside the panel's folder), a method other than
`GET` and `HEAD` 405. The files are read once when the node starts. Every HTTP response
carries a strict `Content-Security-Policy` (`default-src 'none'; script-src 'self';
style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none';
form-action 'none'; frame-ancestors 'none'`), `X-Content-Type-Options: nosniff`,
`Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`,
`Cross-Origin-Resource-Policy: same-origin`, `Cache-Control: no-cache`, and over TLS
`Cross-Origin-Opener-Policy: same-origin` (browsers ignore it on a plain-HTTP origin). The panel
connects to the API at the same address, sends its `hello` with the token the operator
typed (kept in the tab's `sessionStorage`, never in a URL), asks for [`panels`](#panels)
and subscribes.

## Web pages and the `Origin` header

A web page open in a browser on the operator's machine can open a WebSocket to any address,
`ws://127.0.0.1:8181` included, and would then act with the rights of a client on that
machine (`auth.loopback_anonymous_level`, say). Browsers say which site a page comes from
in the `Origin` header of the handshake; other clients (the Python client, the `tieline`
command, control systems) send none and are not affected. A handshake carrying an `Origin`
is accepted only when the origin is

- the node's own panel: the origin is `http://` (`https://` with `tls`) followed by the
  request's own `Host` header, and that `Host` names this API's port;
- the panel of another member of the node's cluster: a member's advertised WebSocket URL
  (the `url` of `status`'s `peers`), `ws://` read as `http://` and `wss://` as `https://`,
  so a panel follows a failover to the node that took over;
- listed in the API's `allowed_origins` setting (see
  [settings.md](settings.md#websocket-api-apis-type-websocket)): scheme, host and port
  as the browser sends them, the default port left out or not.

Any other is refused with HTTP status **403** before any message, and logged with the
origin it carried (once a minute per origin).

A page whose origin's host is not a loopback IP address (`127.0.0.1`, `[::1]`) or
`localhost` never gets `auth.loopback_anonymous_level`, even from the node's own machine:
a foreign site can make its own name resolve to 127.0.0.1 (DNS rebinding), and its page
then passes as the node's own. Its `hello` without a token is refused with
`unauthenticated`; with the operator's token it works, and a foreign page cannot read the
token the operator typed into the real panel.

## TLS

With a `tls` block in its `apis` entry (a PEM certificate chain and private key kept in the
settings folder) the API serves `wss://` only, on the same `listen` address. Clients must
trust the certificate: the Python client takes an `ssl.SSLContext`
(`Client(["wss://mcr-1:8181"], token=..., ssl=ssl.create_default_context(cafile="ca.pem"))`).
Without `tls` the traffic, tokens included, is plain text: keep it on a trusted network or
on loopback.

## Plugin commands

Plugins can add request types (hook `tieline_api_commands`): each has its own schema and
permission level and is answered with a `response` like the built-in ones. They are not
listed here; `tieline plugins` shows which plugins are loaded, and an unknown `type` is
refused with a list of the types the server knows.
"""


# -------------------------------------------------------------------------------------------
# Rendering
# -------------------------------------------------------------------------------------------


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _pretty(value: Any, indent: int = 0, used: int = 0, width: int = 92) -> str:
    """JSON text; a value that fits on the rest of its line (``used`` characters taken)
    stays on one line, others get one item per line, indented by two spaces a level."""
    text = _dump(value)
    if used + len(text) <= width or not isinstance(value, (dict, list)) or not value:
        return text
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            prefix = f"{pad}{_dump(key)}: "
            items.append(prefix + _pretty(item, indent + 2, len(prefix), width))
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _pretty(item, indent + 2, len(pad), width) for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def _json_block(value: Any) -> str:
    """A JSON value as a fenced block."""
    return f"```json\n{_pretty(value)}\n```"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in words."""
    if "const" in schema:
        return f"`{_dump(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{_dump(v)}`" for v in schema["enum"])
    kinds = schema.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = []
    for kind in kinds:
        if kind == "array":
            items = schema.get("items", {})
            if items.get("type") == "object" or "properties" in items:
                words.append("array of objects")
            elif items:
                words.append(f"array of {_type(items)}")
            else:
                words.append("array")
        else:
            words.append(kind)
    return " or ".join(words)


def _constraints(schema: dict[str, Any]) -> list[str]:
    out = []
    if "minimum" in schema and "maximum" in schema:
        out.append(f"{schema['minimum']}–{schema['maximum']}")
    elif "minimum" in schema:
        out.append(f"≥ {schema['minimum']}")
    elif "maximum" in schema:
        out.append(f"≤ {schema['maximum']}")
    if schema.get("minLength") == 1:
        out.append("non-empty")
    elif "minLength" in schema:
        out.append(f"at least {schema['minLength']} characters")
    if "maxLength" in schema:
        out.append(f"at most {schema['maxLength']} characters")
    if schema.get("minItems") == 1:
        out.append("at least one item")
    elif "minItems" in schema:
        out.append(f"at least {schema['minItems']} items")
    if schema.get("uniqueItems"):
        out.append("no repeats")
    items = schema.get("items", {})
    if items.get("minLength") == 1:
        out.append("items non-empty")
    if "pattern" in schema:
        out.append(f"pattern `{schema['pattern']}`")
    if "default" in schema:
        out.append(f"default `{_dump(schema['default'])}`")
    return out


def _fields(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any], bool]]:
    """(dotted path, schema, required) of every property, nested objects and arrays included."""
    out = []
    required = set(schema.get("required", ()))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        out.append((path, sub, name in required))
        if "properties" in sub:
            out += _fields(sub, path + ".")
        items = sub.get("items", {})
        if isinstance(items, dict) and "properties" in items:
            out += _fields(items, path + "[].")
    return out


def _field_table(message: str, schema: dict[str, Any], *, notes: bool) -> str:
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for path, sub, required in _fields(schema):
        description = sub.get("description", "")
        if not description and notes:
            description = SERVER_FIELD_NOTES.get((message, path), "")
        if not description and path == "type" and "const" in sub:
            description = f"Always `{_dump(sub['const'])}`."
        if not description:
            raise Incomplete(
                f"{message}: field '{path}' has no description; add one to its schema or to "
                f"SERVER_FIELD_NOTES in docs/gen_api_reference.py"
            )
        extra = _constraints(sub)
        if extra:
            joined = "; ".join(extra)
            description = f"{description.rstrip('.')}. {joined[0].upper()}{joined[1:]}."
        rows.append(f"| `{path}` | {_cell(_type(sub))} | {'yes' if required else 'no'} | "
                    f"{_cell(description)} |")
    return "\n".join(rows)


def _level(schema: dict[str, Any], name: str) -> int:
    try:
        return int(schema["x-permission-level"])
    except KeyError:
        raise Incomplete(f"request schema '{name}' has no x-permission-level") from None


def _example_for(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for request, response in [*EXAMPLE_FLOW, *CLUSTER_EXAMPLES]:
        if request["type"] == name and response["ok"]:
            return request, response
    raise Incomplete(
        f"request '{name}' has no successful example; add one to EXAMPLE_FLOW in "
        "docs/gen_api_reference.py"
    )


def _requests() -> str:
    found = catalog.api_request_schemas()
    names = [n for n in REQUEST_ORDER if n in found] + sorted(set(found) - set(REQUEST_ORDER))
    schemas = {name: found[name] for name in names}
    out = ["## Requests", "",
           "What clients send. Every request may carry an `id`, echoed in its response.", "",
           "| type | level | what it does |", "|---|---|---|"]
    for name, schema in schemas.items():
        level = _level(schema, name)
        out.append(f"| [`{name}`](#{name}) | {level} ({LEVEL_NAMES[level]}) | "
                   f"{_cell(schema.get('description', ''))} |")
    for name, schema in schemas.items():
        if name not in RESULTS:
            raise Incomplete(f"request '{name}' has no entry in RESULTS in "
                             "docs/gen_api_reference.py")
        level = _level(schema, name)
        request, response = _example_for(name)
        who = ("any connection, before authenticating" if level == 0
               else f"{level} ({LEVEL_NAMES[level]})")
        out += [
            "", f"### `{name}`", "", schema.get("description", ""), "",
            f"Permission level: {who}.", "",
            _field_table(name, schema, notes=False), "",
            f"Result: {RESULTS[name]}", "",
            "Example:", "", _json_block(request), "", _json_block(response),
        ]
    return "\n".join(out)


def _event_kinds(schema: dict[str, Any]) -> str:
    kinds = schema["properties"]["event"]["enum"]
    missing = [k for k in kinds if k not in EVENT_KINDS]
    if missing:
        raise Incomplete(f"event kind(s) {', '.join(missing)} missing from EVENT_KINDS in "
                         "docs/gen_api_reference.py")
    examples = {}
    for event in EXAMPLE_EVENTS + OTHER_EVENT_EXAMPLES:
        examples.setdefault(event["event"], event)
    out = ["Event kinds:", "", "| `event` | sent when | fields |", "|---|---|---|"]
    for kind in kinds:
        when, fields = EVENT_KINDS[kind]
        unknown = [f for f in fields if f not in schema["properties"]]
        if unknown:
            raise Incomplete(f"EVENT_KINDS['{kind}'] names fields not in event.schema.json: "
                             + ", ".join(unknown))
        out.append(f"| `{kind}` | {_cell(when)} | "
                   + ", ".join(f"`{f}`" for f in fields) + " |")
    out += ["", "Examples:", ""]
    for kind in kinds:
        if kind in examples:
            out += [_json_block(examples[kind]), ""]
    return "\n".join(out).rstrip()


def _server_messages() -> str:
    schemas = catalog.api_server_schemas()
    order = ["hello", "heartbeat", "response", "event"]
    names = [n for n in order if n in schemas] + sorted(set(schemas) - set(order))
    out = ["## Server messages", "", "What the server sends.", ""]
    for name in names:
        schema = schemas[name]
        out += [f"### `{name}`", "", schema.get("description", ""), "",
                _field_table(name, schema, notes=True), ""]
        if name == "hello":
            out += ["Example:", "", _json_block(SERVER_HELLO_EXAMPLE), ""]
        elif name == "heartbeat":
            out += ["Example:", "", _json_block(HEARTBEAT_EXAMPLE), ""]
        elif name == "response":
            out += ["Examples: see each request, and [Errors](#errors).", ""]
        elif name == "event":
            out += [_event_kinds(schema), ""]
    return "\n".join(out).rstrip()


def _errors() -> tuple[str, str]:
    codes = catalog.api_server_schemas()["response"]["properties"]["error"]["properties"][
        "code"]["enum"]
    missing = [c for c in codes if c not in ERROR_CODES]
    if missing:
        raise Incomplete(f"error code(s) {', '.join(missing)} missing from ERROR_CODES in "
                         "docs/gen_api_reference.py")
    table = "\n".join(f"| `{code}` | {_cell(ERROR_CODES[code])} |" for code in codes)
    example = next(r for _, r in EXAMPLE_FLOW
                   if not r["ok"] and r["error"]["code"] == "out_of_range")
    return table, _json_block(example)


def render() -> str:
    """The whole of docs/api.md."""
    table, example = _errors()
    intro = INTRO.replace("{ERROR_TABLE}", table).replace("{ERROR_EXAMPLE}", example)
    parts = [
        "# WebSocket API reference",
        "",
        f"<!-- Generated by `{COMMAND}` from schemas/api/. Do not edit by hand: change the "
        "schemas or the generator, then run it. -->",
        "",
        intro.rstrip(),
        "",
        _requests(),
        "",
        _server_messages(),
    ]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/api.md differs from what would be written")
    args = parser.parse_args(argv)
    try:
        text = render()
    except Incomplete as exc:
        print(f"cannot write {OUTPUT.name}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date; run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
