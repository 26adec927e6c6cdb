"""The ``tieline`` commands that talk to a running node through the Python client
(:mod:`tieline.client`): status, tally, route, salvo, protect, lock, release, label,
failover switch-back, backup add/remove.

Like :mod:`.main`, this module imports only click at import time; each command imports the
client (and asyncio) when it runs.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .main import (DEFAULT_PEER_PORT, DEFAULT_SERVER, json_option, main, server_option,
                   token_option)


# -- client commands ---------------------------------------------------------------------------


def _client_call(server: str, token: str | None, action: Any, **options: Any) -> Any:
    """Connect, run ``action(client)``, close; map failures to messages and exit codes.

    :param options: more :class:`~tieline.client.Client` options (``follow_active``).
    """
    import asyncio

    from ..client import Client, ConnectionLost
    from ..errors import RequestError

    async def go() -> Any:
        async with Client(server, token=token, client_name="tieline-cli", **options) as client:
            return await action(client)

    try:
        return asyncio.run(go())
    except ConnectionLost as exc:
        click.echo(f"tieline: {exc}", err=True)
        sys.exit(3)
    except RequestError as exc:
        where = f" (field '{exc.field}')" if exc.field else ""
        click.echo(f"tieline: {exc.code}: {exc.message}{where}", err=True)
        sys.exit(1)


def _pick_router(client: Any, router: str | None) -> Any:
    from ..errors import NotFound

    if router is None:
        if len(client.routers) != 1:
            raise NotFound("this node has several routers (" + ", ".join(client.routers)
                           + "); choose one with --router", field="router")
        return next(iter(client.routers.values()))
    if router not in client.routers:
        raise NotFound(f"no router '{router}'; this node has: {', '.join(client.routers)}",
                       field="router")
    return client.routers[router]


def _port(mirror: Any, kind: str, text: str) -> int:
    """A 1-based port from a number or a label (case-insensitive)."""
    from ..errors import NotFound, OutOfRange

    labels = mirror.labels["sources" if kind == "source" else "destinations"]
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= len(labels):
            raise OutOfRange(f"router '{mirror.id}': {kind} {number} out of range "
                             f"(1–{len(labels)})", field=kind)
        return number
    folded = text.casefold()
    for index, label in enumerate(labels):
        if label.casefold() == folded:
            return index + 1
    raise NotFound(f"router '{mirror.id}' has no {kind} labelled '{text}'", field=kind)


def _servers(server: str) -> list[str]:
    urls = [u.strip() for u in server.split(",") if u.strip()]
    if not urls:
        raise click.UsageError("give --server URL[,URL…], e.g. ws://127.0.0.1:8181")
    return urls


def _age(ms: int | None) -> str:
    if ms is None:
        return "-"
    return f"{ms} ms ago" if ms < 1000 else f"{ms / 1000:.1f} s ago"


@main.command()
@click.option("--server", "server", metavar="URL[,URL…]", envvar="TIELINE_SERVER",
              default=DEFAULT_SERVER, show_default=True,
              help="The node to ask; several (comma-separated): every member as a table.")
@token_option
@click.option("--cluster", is_flag=True,
              help="Show every member of the cluster as a table: the node(s) asked and "
                   "the peers they know.")
@json_option
def status(server: str, token: str | None, cluster: bool, as_json: bool) -> None:
    """Show a node's own status: role, state, routers and peers.

    The node asked answers for itself, a backup too ("Backup is idle"): status is not
    moved to the active node. Given several servers, or --cluster, show every member of
    the cluster as a table (name, role, state, status, epoch, URL, reachable, age of its
    last heartbeat and which node saw it): each server is asked, and the peers they know
    are listed from their view. Exit status 0 when at least one node answered.
    """
    urls = _servers(server)
    if len(urls) == 1 and not cluster:
        _show_status(_client_call(urls[0], token, lambda c: c.status(), follow_active=False),
                     as_json)
        return
    import asyncio

    answers = asyncio.run(_ask_each(urls, token))
    members = _cluster_members(answers)
    if as_json:
        click.echo(json.dumps({"members": members}))
    else:
        _show_members(members)
    for _, _, error in answers:
        if error is not None:
            click.echo(f"tieline: {error}", err=True)
    if not any(result is not None for _, result, _ in answers):
        sys.exit(1 if any(" refused: " in (e or "") for _, _, e in answers) else 3)


def _show_status(result: dict[str, Any], as_json: bool) -> None:
    """One node's status, as ``tieline status --server URL`` prints it."""
    out = {key: result[key] for key in ("node", "role", "state", "status", "epoch")}
    out["routers"] = [{"id": r["id"], "online": r["online"]} for r in result["routers"]]
    out["peers"] = result.get("peers", [])
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{out['node']}: {out['status']} (role {out['role']}, state {out['state']}, "
               f"epoch {out['epoch']})")
    for r in out["routers"]:
        click.echo(f"  router {r['id']}: {'online' if r['online'] else 'OFFLINE'}")
    for p in out["peers"]:
        who = f"node '{p['node']}' ({p['role']}, {p['state']}, epoch {p['epoch']})" \
            if p.get("node") else "node not known"
        link = "connected" if p["connected"] else "NOT CONNECTED"
        if p.get("heard_ms_ago") is not None:
            link += f", last heartbeat {_age(p['heard_ms_ago'])}"
        problem = f"; PROBLEM: {p['problem']}" if p.get("problem") else ""
        click.echo(f"  peer {p['address']}: {who}, {link}{problem}")


async def _ask_each(urls: list[str], token: str | None
                    ) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """Each node's own status, asked at once: ``(url, result, None)``, or ``(url, None,
    why)`` when it could not be asked (``why`` names the URL; "URL refused: …" when the
    node refused the request)."""
    import asyncio

    from ..client import Client, ConnectionLost
    from ..errors import RequestError

    async def ask(url: str) -> tuple[str, dict[str, Any] | None, str | None]:
        try:
            async with Client(url, token=token, client_name="tieline-cli", failover=False,
                              follow_active=False) as client:
                return url, await client.status(), None
        except ConnectionLost as exc:
            return url, None, str(exc)
        except RequestError as exc:
            return url, None, f"{url} refused: {exc.code}: {exc.message}"

    return list(await asyncio.gather(*(ask(url) for url in urls)))


def _cluster_members(answers: list[tuple[str, dict[str, Any] | None, str | None]]
                     ) -> list[dict[str, Any]]:
    """Every member: the nodes asked (in order; what each said of itself, or unreachable),
    then the peers they know that were not asked. ``heard_ms_ago`` is the freshest age of
    its last heartbeat among the views of the nodes that answered, ``seen_by`` that node.
    A member only known from a view is ``reachable`` when that node is connected to it;
    the state of a member that is not reachable is not known (None)."""
    def key(url: str | None) -> str:
        return (url or "").strip().rstrip("/")

    members: list[dict[str, Any]] = []
    for url, result, error in answers:
        member: dict[str, Any] = {
            "node": None, "role": None, "state": None, "status": None, "epoch": None,
            "url": url, "asked": True, "reachable": result is not None,
            "heard_ms_ago": None, "seen_by": None, "problem": None, "error": error}
        if result is not None:
            member.update({key: result[key] for key in ("node", "role", "state", "status",
                                                        "epoch")})
        members.append(member)

    def find(peer: dict[str, Any]) -> dict[str, Any] | None:
        for member in members:
            if peer.get("node") and member["node"] == peer["node"]:
                return member
            if peer.get("url") and key(member["url"]) == key(peer["url"]):
                return member
        return None

    for _, result, _ in answers:
        if result is None:
            continue
        viewer = result["node"]
        for peer in result.get("peers", []):
            member = find(peer)
            if member is None:
                member = {"node": peer.get("node"), "role": None, "state": None,
                          "status": None, "epoch": None,
                          "url": peer.get("url") or peer.get("address"), "asked": False,
                          "reachable": False, "heard_ms_ago": None, "seen_by": viewer,
                          "problem": None, "error": None}
                members.append(member)
            member["node"] = member["node"] or peer.get("node")
            member["role"] = member["role"] or peer.get("role")
            heard = peer.get("heard_ms_ago")
            fresher = heard is not None and (member["heard_ms_ago"] is None
                                             or heard < member["heard_ms_ago"])
            if fresher:
                member["heard_ms_ago"], member["seen_by"] = heard, viewer
            if peer.get("problem"):
                member["problem"] = member["problem"] \
                    or f"{peer['problem']} (seen by {viewer})"
            if not member["asked"] and (fresher or member["seen_by"] == viewer):
                connected = bool(peer.get("connected"))
                member["reachable"] = connected
                member.update({key: peer.get(key) if connected else None
                               for key in ("state", "status", "epoch")})
    return members


def _show_members(members: list[dict[str, Any]]) -> None:
    """The members as a table, one line each."""
    header = ["NAME", "ROLE", "STATE", "STATUS", "EPOCH", "URL", "REACHABLE",
              "LAST HEARTBEAT"]

    def cell(value: Any) -> str:
        return "-" if value is None or value == "" else str(value)

    rows = [[cell(m["node"] or "?"), cell(m["role"]), cell(m["state"]), cell(m["status"]),
             cell(m["epoch"]), cell(m["url"]), "yes" if m["reachable"] else "NO",
             "-" if m["heard_ms_ago"] is None
             else f"{_age(m['heard_ms_ago'])} (seen by {m['seen_by']})"]
            for m in members]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip())
    for m in members:
        if m["problem"]:
            click.echo(f"{m['node'] or m['url']}: PROBLEM: {m['problem']}")


@main.command()
@click.option("--router", metavar="ID", help="Only this router.")
@server_option
@token_option
@json_option
def tally(router: str | None, server: str, token: str | None, as_json: bool) -> None:
    """Show which source feeds each destination."""

    async def action(client: Any) -> Any:
        await client.snapshot()
        return [_pick_router(client, router)] if router else list(client.routers.values())

    mirrors = _client_call(server, token, action)
    if as_json:
        click.echo(json.dumps({"routers": [{
            "id": m.id, "levels": m.levels,
            "crosspoints": [
                {"level": level, "destination": d + 1, "source": s}
                for level in m.levels for d, s in enumerate(m.crosspoints[level]) if s is not None
            ],
        } for m in mirrors]}))
        return
    for m in mirrors:
        click.echo(f"router {m.id}{'' if m.online else ' (OFFLINE)'}")
        dests, srcs = m.labels["destinations"], m.labels["sources"]
        width = max((len(x) for x in dests), default=4)
        for d in range(m.destinations):
            cells = []
            for level in m.levels:
                s = m.crosspoints[level][d]
                cells.append(f"{level}: {'?' if s is None else f'{s} {srcs[s - 1]}'}")
            lock = m.protects.get((m.levels[0], d + 1))
            flag = f"  [{lock['kind']} {lock['owner']}]" if lock else ""
            click.echo(f"  {d + 1:>4} {dests[d]:<{width}}  " + "   ".join(cells) + flag)


@main.command()
@click.argument("destination")
@click.argument("source")
@click.option("--router", metavar="ID", help="Router id (needed when the node has several).")
@click.option("--level", "levels", metavar="NAME", multiple=True,
              help="Only this level (repeatable); every level by default.")
@server_option
@token_option
def route(destination: str, source: str, router: str | None, levels: tuple[str, ...],
          server: str, token: str | None) -> None:
    """Route SOURCE to DESTINATION (1-based numbers or labels); exit 0 once confirmed."""

    async def action(client: Any) -> Any:
        await client.snapshot()
        mirror = _pick_router(client, router)
        dest = _port(mirror, "destination", destination)
        src = _port(mirror, "source", source)
        result = await client.route(mirror.id, dest, src, list(levels) or None)
        return mirror, dest, src, result

    mirror, dest, src, result = _client_call(server, token, action)
    names = ", ".join(x["level"] for x in result["crosspoints"])
    click.echo(f"{mirror.id}: destination {dest} ({mirror.labels['destinations'][dest - 1]}) "
               f"← source {src} ({mirror.labels['sources'][src - 1]}) on {names}: confirmed")


@main.command()
@click.argument("name")
@server_option
@token_option
@json_option
def salvo(name: str, server: str, token: str | None, as_json: bool) -> None:
    """Take salvo NAME; exit 0 only if every crosspoint was confirmed."""
    result = _client_call(server, token, lambda c: c.salvo(name))
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"salvo {name}: {len(result['taken'])} crosspoint(s) confirmed, "
                   f"{len(result['refused'])} refused")
        for r in result["refused"]:
            click.echo(f"  refused: destination {r['destination']} ← source {r['source']} "
                       f"on {r['level']}: {r['reason']}")
    if result["refused"]:
        sys.exit(1)


def _protect_command(kind: str) -> Any:
    @click.argument("destination")
    @click.option("--router", metavar="ID", help="Router id (needed when the node has several).")
    @click.option("--level", "levels", metavar="NAME", multiple=True,
                  help="Only this level (repeatable); every level by default.")
    @server_option
    @token_option
    def command(destination: str, router: str | None, levels: tuple[str, ...], server: str,
                token: str | None, **extra: Any) -> None:
        async def action(client: Any) -> Any:
            await client.snapshot()
            mirror = _pick_router(client, router)
            dest = _port(mirror, "destination", destination)
            fields: dict[str, Any] = {"router": mirror.id, "destination": dest}
            if levels:
                fields["levels"] = list(levels)
            if extra.get("force"):
                fields["force"] = True
            await client.request(kind, **fields)
            return mirror, dest

        mirror, dest = _client_call(server, token, action)
        done = {"protect": "protected", "lock": "locked", "release": "released"}[kind]
        click.echo(f"{mirror.id}: destination {dest} "
                   f"({mirror.labels['destinations'][dest - 1]}) {done}")

    return command


main.command("protect", help="Protect DESTINATION: only you may re-route it.")(
    _protect_command("protect"))
main.command("lock", help="Lock DESTINATION: nobody may re-route it, you included.")(
    _protect_command("lock"))
main.command("release", help="Release a protect or lock on DESTINATION.")(
    click.option("--force", is_flag=True,
                 help="Release someone else's (permission level 3).")(_protect_command("release")))


@main.command()
@click.argument("kind", type=click.Choice(["source", "destination"]))
@click.argument("port")
@click.argument("text")
@click.option("--router", metavar="ID", help="Router id (needed when the node has several).")
@server_option
@token_option
def label(kind: str, port: str, text: str, router: str | None, server: str,
          token: str | None) -> None:
    """Set the label of a source or destination (number or current label); "" clears it."""

    async def action(client: Any) -> Any:
        await client.snapshot()
        mirror = _pick_router(client, router)
        index = _port(mirror, kind, port)
        await client.label(mirror.id, kind, index, text)
        return mirror, index

    mirror, index = _client_call(server, token, action)
    click.echo(f"{mirror.id}: {kind} {index} labelled {text!r}")


# -- failover ----------------------------------------------------------------------------------


@main.group()
def failover() -> None:
    """Failover operations on a cluster (permission level 3)."""


@failover.command("switch-back")
@server_option
@token_option
def failover_switch_back(server: str, token: str | None) -> None:
    """Hand the active role back to the main now (a planned handover)."""
    result = _client_call(server, token,
                          lambda c: c.request("failover", action="switch_back"))
    if result.get("switched"):
        click.echo(f"switched back: the main is active (epoch {result.get('epoch')})")
    else:
        click.echo(f"nothing done: {result.get('reason') or result.get('error')}")
        sys.exit(1)


@main.group()
def backup() -> None:
    """Add or remove a backup node (on the main; permission level 3)."""


def _members(action: str, address: str, server: str, token: str | None) -> None:
    from ..transports import parse_hostport

    try:
        host, port = parse_hostport(address, default_port=DEFAULT_PEER_PORT, port_zero=False)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    result = _client_call(server, token,
                          lambda c: c.request("members", action=action, address=address))
    click.echo(f"peers of the main: {', '.join(result.get('peers', [])) or 'none'}")


@backup.command("add")
@click.argument("address", metavar="HOST[:PORT]")
@server_option
@token_option
def backup_add(address: str, server: str, token: str | None) -> None:
    """Add the node whose peer link listens on HOST[:PORT] (port 7401 by default)."""
    _members("add", address, server, token)


@backup.command("remove")
@click.argument("address", metavar="HOST[:PORT]")
@server_option
@token_option
def backup_remove(address: str, server: str, token: str | None) -> None:
    """Remove the node whose peer link listens on HOST[:PORT] (port 7401 by default)."""
    _members("remove", address, server, token)
