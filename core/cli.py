"""The ``tieline`` command.

Exit status: 0 done; 1 the request was refused or the settings are invalid (the message
says why); 2 usage error; 3 no server could be reached.

Start-up: this module imports only click and what the help texts need. Each command
imports what it uses when it runs (the node, the client, asyncio, the plugins), so that
``tieline --help`` and ``tieline status`` do not load the device, transport and plugin
machinery; tests/unit/test_cli_imports.py holds that.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from . import __version__
from .plugin_kit import KINDS as PLUGIN_KINDS

#: the usual port of the failover peer link
DEFAULT_PEER_PORT = 7401
SERVER_HELP = "Server URL(s), comma-separated, tried in order."
DEFAULT_SERVER = "ws://127.0.0.1:8181"


def _settings_folder(settings: str | None) -> Path | None:
    value = settings or os.environ.get("TIELINE_SETTINGS")
    return Path(value) if value else None


settings_option = click.option(
    "--settings", "settings", metavar="DIR", envvar="TIELINE_SETTINGS",
    help="Settings folder (default: $TIELINE_SETTINGS).",
)
server_option = click.option(
    "--server", "server", metavar="URL[,URL…]", envvar="TIELINE_SERVER", default=DEFAULT_SERVER,
    show_default=True, help=SERVER_HELP,
)
token_option = click.option(
    "--token", "token", envvar="TIELINE_TOKEN", metavar="TOKEN",
    help="Authentication token (default: $TIELINE_TOKEN).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
@click.version_option(__version__, prog_name="tieline")
def main() -> None:
    """tieline: control broadcast routers, and keep control alive when a controller fails."""
    _quiet_dependency_warnings()


def _quiet_dependency_warnings() -> None:
    """Keep the ``CryptographyDeprecationWarning`` lines that asyncssh's modules raise when
    they are imported (DSA in type hints, with recent cryptography releases) off the
    terminal of every command: the failover plugins import asyncssh when plugins load.
    Only that category from asyncssh's modules, and only when no ``-W`` option or
    ``PYTHONWARNINGS`` decides."""
    if sys.warnoptions:
        return
    try:
        from cryptography.utils import CryptographyDeprecationWarning
    except ImportError:  # no cryptography: no asyncssh either, nothing to filter
        return
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                            module=r"asyncssh\.")


# -- run ---------------------------------------------------------------------------------------


@main.command()
@settings_option
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def run(settings: str | None, log_level: str) -> None:
    """Run a node. Without settings, run the demo (a simulated 32x32 router).

    SIGHUP re-reads the settings: users, salvos and labels apply at once.
    """
    import asyncio
    import gc
    import signal

    from .demo import ensure_demo
    from .errors import SettingsError, TielineError
    from .node import build_node

    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if log_level.upper() != "DEBUG":  # one line per reconnect attempt otherwise
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
    folder = _settings_folder(settings)
    if folder is None:
        folder = ensure_demo()
        click.echo(f"tieline: no --settings given; running the demo from {folder}")
    try:
        node = build_node(folder)
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except TielineError as exc:  # the node cannot run here (a failover action's preflight)
        click.echo(f"tieline: {exc}", err=True)
        sys.exit(1)
    from contextlib import nullcontext

    from .discovery import advertising
    from .service import ServiceNotifier

    systemd = ServiceNotifier(node)  # sd_notify; does nothing outside a service manager
    discovery = node.settings.discovery  # mDNS advertising: "discovery" in tieline.json
    mdns = advertising(node, discovery.get("interfaces") or None) \
        if discovery.get("mdns") else nullcontext()

    def ready(node: Any) -> None:
        gc.freeze()  # start-up objects leave the collector's generations: shorter full GCs
        for api in node.apis:
            click.echo(f"tieline: node '{node.settings.node_name}' serving {api.describe()} "
                       f"(settings: {folder})")
        sys.stdout.flush()
        systemd.ready()  # after the serving lines: READY=1 means clients can connect

    def reload() -> None:
        try:
            node.reload()
        except SettingsError as exc:
            logging.getLogger("tieline").error("settings not reloaded (the running ones "
                                               "stay): %s", exc)

    def stop() -> None:
        systemd.stopping()
        node.stop()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        loop.add_signal_handler(signal.SIGHUP, reload)
        async with systemd, mdns:
            await node.run(ready)

    try:
        asyncio.run(serve())
    except* TielineError as group:
        for exc in group.exceptions:
            click.echo(f"tieline: {exc}", err=True)
        sys.exit(1)
    click.echo("tieline: stopped")


# -- validate and plugins ----------------------------------------------------------------------


@main.command()
@settings_option
def validate(settings: str | None) -> None:
    """Check a settings folder without starting anything.

    It refuses exactly what `tieline run` refuses in the settings (the same checks, every
    file they name loaded); run also needs what only the machine it runs on can give:
    addresses to listen on, free ports, privileges, serial devices.
    """
    from .errors import SettingsError
    from .node import check_settings

    folder = _settings_folder(settings)
    if folder is None:
        raise click.UsageError("give --settings DIR or set TIELINE_SETTINGS")
    logging.basicConfig(level="ERROR", stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        loaded, _ = check_settings(folder)
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(
        f"{folder}: valid ({len(loaded.routers)} router(s), {len(loaded.apis)} API(s), "
        f"{len(loaded.salvos)} salvo(s), {len(loaded.users)} user(s))"
    )


@main.command()
@settings_option
@json_option
def plugins(settings: str | None, as_json: bool) -> None:
    """List installed plugins: name, distribution, version, hooks."""
    from .plugin_manager import Plugins
    from .settings import read_disabled_plugins

    folder = _settings_folder(settings)
    logging.basicConfig(level="CRITICAL")
    manager = Plugins(disabled=read_disabled_plugins(folder) if folder else ())
    infos = sorted(manager.infos.values(), key=lambda i: i.name)
    if as_json:
        click.echo(json.dumps({"plugins": [i.to_dict() for i in infos]}, indent=2))
        return
    for info in infos:
        line = f"{info.name:<20} {info.distribution} {info.version}  [{info.status}]"
        click.echo(line)
        if info.hooks:
            click.echo(f"{'':<20} hooks: {', '.join(info.hooks)}")
        if info.error:
            click.echo(f"{'':<20} error: {info.error}")


# -- emulate -----------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--listen", metavar="HOST:PORT", help="Serve controllers over TCP here.")
@click.option("--serial", "serial_device", metavar="DEVICE",
              help="Serve one controller on this serial line (protocols that have one).")
@click.option("--inputs", type=click.IntRange(1, 65536), default=16, show_default=True)
@click.option("--outputs", type=click.IntRange(1, 65536), default=16, show_default=True)
@click.option("--levels", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--command-log", "command_log", type=click.Path(dir_okay=False), metavar="FILE",
              help="Append every command received to FILE, one JSON line each.")
@click.option("--max-controllers", type=click.IntRange(1), metavar="N",
              help="Disconnect TCP controllers beyond N at once (a device or serial-to-IP "
                   "server that takes one connection: --max-controllers 1).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def emulate(name: str, listen: str | None, serial_device: str | None, inputs: int,
            outputs: int, levels: int, command_log: str | None, max_controllers: int | None,
            log_level: str) -> None:
    """Run the device emulator NAME (see `tieline plugins`): a router without hardware."""
    import asyncio
    import signal

    from .errors import TielineError
    from .plugin_manager import Plugins
    from .transports import SerialTransport, parse_hostport

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    emulators = Plugins().emulators()
    if name not in emulators:
        raise click.UsageError(f"no emulator '{name}'; installed: {', '.join(sorted(emulators))}")
    cls = emulators[name][1]
    if not listen and not serial_device:
        raise click.UsageError("give --listen HOST:PORT and/or --serial DEVICE")
    if serial_device and not cls.serial:
        raise click.UsageError(f"the {name} protocol has no serial line")
    try:
        address = parse_hostport(listen) if listen else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    async def serve() -> None:
        device = cls.from_cli(inputs=inputs, outputs=outputs, levels=levels)
        device.max_controllers = max_controllers
        if command_log:
            device.command_log_file = open(command_log, "a", encoding="utf-8")  # noqa: SIM115
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        try:
            await device.start()
            if address is not None:
                server = await device.serve_tcp(*address)
                host, port = server.sockets[0].getsockname()[:2]
                click.echo(f"tieline: emulating {name} ({inputs}x{outputs}, {levels} level(s)) "
                           f"on tcp://{host}:{port}")
            if serial_device:
                stream = await SerialTransport(
                    {"type": "serial", "device": serial_device},
                    defaults=getattr(cls, "serial_defaults", {})).open()
                device.serve_stream(stream, serial_device)
                click.echo(f"tieline: emulating {name} on {serial_device}")
            sys.stdout.flush()
            await device.serve_forever()
        except asyncio.CancelledError:
            pass
        finally:
            await device.close()
            if device.command_log_file is not None:
                device.command_log_file.close()

    try:
        asyncio.run(serve())
    except* (OSError, TielineError, ValueError) as group:
        for exc in group.exceptions:
            click.echo(f"tieline: {exc}", err=True)
        sys.exit(1)
    click.echo("tieline: stopped")


# -- plugin ------------------------------------------------------------------------------------


@main.group()
def plugin() -> None:
    """Write your own plugin: a driver, client API or failover strategy package."""


@plugin.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(PLUGIN_KINDS), default="driver", show_default=True,
              help="What the plugin provides.")
@click.option("--output", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."),
              help="Write the project folder here, created if needed (default: here).")
@click.option("--set", "values", metavar="KEY=VALUE", multiple=True,
              help="A template value (author, version, description, project_name …); "
                   "repeatable.")
def plugin_new(name: str, kind: str, output: Path, values: tuple[str, ...]) -> None:
    """Render a new plugin package NAME (a lower-case Python name, e.g. acme_matrix)."""
    from .plugin_kit import PluginKitError, check_name, new_plugin

    given: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--set {item}: write KEY=VALUE, e.g. --set author='Ada L.'")
        given[key.strip()] = value
    try:
        check_name(name)  # before --output is created
        output.mkdir(parents=True, exist_ok=True)
        folder = new_plugin(name, kind, output, values=given)
    except OSError as exc:
        click.echo(f"tieline: cannot write the plugin into {output}: {exc.strerror or exc}"
                   f"{f' ({exc.filename})' if exc.filename else ''}", err=True)
        sys.exit(1)
    except PluginKitError as exc:
        click.echo(f"tieline: {exc}", err=True)
        sys.exit(1)
    click.echo(f"tieline: wrote the {kind} plugin '{name}' to {folder}")
    click.echo("next:")
    click.echo(f"  cd {folder}")
    click.echo("  pip install -e '.[test]'        # into the environment tieline runs in")
    click.echo(f"  pytest                          # its tests: {_KIND_TESTS[kind]}")
    click.echo(f"  tieline plugins                 # lists '{name}'")
    if kind == "driver":
        click.echo(f"  tieline emulate {name} --listen 127.0.0.1:7700   "
                   "# a device without hardware")
    click.echo(f"  then {_KIND_USE[kind].format(name=name)} (see README.md)")


_KIND_TESTS = {
    "driver": "the driver against its emulator",
    "api": "the API in a real node, over TCP",
    "strategy": "real nodes on one lock file, one killed",
}
_KIND_USE = {
    "driver": 'a router block with "driver": "{name}"',
    "api": 'an apis entry with "type": "{name}"',
    "strategy": 'a failover block with "strategy": "{name}"',
}


# -- service and discover ----------------------------------------------------------------------


@main.group()
def service() -> None:
    """Run a node as a systemd service."""


@service.command("install")
@settings_option
@click.option("--user", metavar="USER",
              help="Run the node as this user (default: $SUDO_USER under sudo, else you).")
@click.option("--name", metavar="NAME",
              help="The unit is tieline-NAME.service (default: the node's name).")
@click.option("--output", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the unit here (default: /etc/systemd/system/tieline-NAME.service).")
def service_install(settings: str | None, user: str | None, name: str | None,
                    output: Path | None) -> None:
    """Write a systemd unit that runs `tieline run --settings DIR` (systemctl is not run)."""
    import getpass
    import pwd

    from .errors import SettingsError
    from .node import check_settings
    from .service import (SYSTEMD_FOLDER, check_unit_name, tieline_executable, unit_file,
                          write_unit)

    folder = _settings_folder(settings)
    if folder is None:
        raise click.UsageError("give --settings DIR or set TIELINE_SETTINGS")
    folder = folder.absolute()
    logging.basicConfig(level="ERROR", stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        loaded, _ = check_settings(folder)
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        click.echo("tieline: no unit written: a service would not start with these settings; "
                   "fix them (tieline validate --settings DIR) and run this again", err=True)
        sys.exit(1)
    name = name or loaded.node_name
    user = user or os.environ.get("SUDO_USER") or getpass.getuser()
    try:
        needs = ("CAP_NET_ADMIN", "CAP_NET_RAW") if "vip" in (loaded.failover or {}) else ()
        text = unit_file(folder, command=tieline_executable(), user=user,
                         name=check_unit_name(name), capabilities=needs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    unit = f"tieline-{name}.service"
    path = output or SYSTEMD_FOLDER / unit
    try:
        write_unit(path, text)
    except OSError as exc:
        click.echo(f"tieline: cannot write {path}: {exc.strerror or exc}; run it as root "
                   "(sudo) or give --output PATH", err=True)
        sys.exit(1)
    click.echo(f"tieline: wrote {path}: node '{loaded.node_name}' from {folder}, as user {user}")
    if not user.isdigit():
        try:
            pwd.getpwnam(user)
        except KeyError:
            click.echo(f"tieline: note: there is no user '{user}' on this machine yet; create "
                       "it, and let it read and write the settings folder, before starting")
    if folder.is_relative_to("/tmp") or folder.is_relative_to("/var/tmp"):
        click.echo(f"tieline: note: the unit has PrivateTmp=yes: the service sees its own "
                   f"empty /tmp, not {folder}; move the settings folder (e.g. to /srv)")
    click.echo("next:")
    if path.absolute().parent != SYSTEMD_FOLDER:
        click.echo(f"  sudo cp {path} {SYSTEMD_FOLDER / unit}")
    click.echo("  sudo systemctl daemon-reload")
    click.echo(f"  sudo systemctl enable --now {unit}")
    click.echo(f"  systemctl status {unit}    # and: journalctl -u {unit} -f")


@main.command()
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to wait for answers.")
@click.option("--interface", "interfaces", metavar="ADDRESS", multiple=True,
              help="Ask only on the interface with this IPv4 address (repeatable; default: "
                   "every interface).")
@json_option
def discover(timeout: float, interfaces: tuple[str, ...], as_json: bool) -> None:
    """List the tieline nodes on the local network (mDNS)."""
    import asyncio

    from .discovery import browse, parse_interfaces
    from .failover import NodeStatus, Role, State

    logging.basicConfig(level="ERROR", stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        chosen = parse_interfaces(",".join(interfaces))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        nodes = asyncio.run(browse(timeout, chosen))
    except (OSError, RuntimeError) as exc:
        click.echo(f"tieline: cannot send mDNS queries: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"nodes": nodes}))
        return
    if not nodes:
        click.echo(f"no tieline node answered within {timeout:g} s")
    for n in nodes:
        try:
            text = NodeStatus(n["node"], Role(n["role"]), State(n["state"])).text
        except ValueError:  # a newer tieline's role or state
            text = "status unknown"
        click.echo(f"{n['node']}: {text} (role {n['role']}, state {n['state']}, "
                   f"epoch {n['epoch']})")
        click.echo(f"  host {n['host']} {', '.join(n['addresses'])}")
        for url in n["apis"]:
            click.echo(f"  api {url}")
        if n["failover"]:
            click.echo(f"  failover {n['failover']}")


# -- users -------------------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Manage the users file of a settings folder."""


def _users_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    from .jsonfile import JsonFileError, load_json

    try:
        main_settings = load_json(folder / "tieline.json").data
    except JsonFileError as exc:
        raise click.ClickException(str(exc)) from exc
    name = (main_settings.get("auth") or {}).get("users_file")
    if not name:
        raise click.ClickException(
            f"{folder / 'tieline.json'} has no auth.users_file; add "
            '"auth": {"users_file": "users.json"} first')
    path = folder / name
    if not path.exists():
        return path, {"users": []}
    try:
        return path, load_json(path).data
    except JsonFileError as exc:
        raise click.ClickException(str(exc)) from exc


def _write_users(path: Path, data: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    from .jsonfile import write_json_atomic
    from .settings import core_schema

    def check(value: object) -> None:
        errors = list(Draft202012Validator(core_schema("users.schema.json")).iter_errors(value))
        if errors:
            raise click.ClickException(f"refusing to write an invalid users file: {errors[0].message}")

    write_json_atomic(path, data, validate=check, new_mode=0o600)


@users.command("add")
@click.argument("name")
@click.option("--level", type=click.IntRange(1, 3), required=True,
              help="1 watch, 2 route, 3 administer.")
@settings_option
def users_add(name: str, level: int, settings: str | None) -> None:
    """Add a user (or give an existing one a new token) and print the token once."""
    from .auth import hash_token, new_token

    folder = _settings_folder(settings)
    if folder is None:
        raise click.UsageError("give --settings DIR or set TIELINE_SETTINGS")
    path, data = _users_file(folder)
    token = new_token()
    entries = [u for u in data.get("users", []) if u.get("name") != name]
    entries.append({"name": name, "level": level, "token_sha256": hash_token(token)})
    _write_users(path, {"users": entries})
    click.echo(token)


@users.command("remove")
@click.argument("name")
@settings_option
def users_remove(name: str, settings: str | None) -> None:
    """Remove a user."""
    folder = _settings_folder(settings)
    if folder is None:
        raise click.UsageError("give --settings DIR or set TIELINE_SETTINGS")
    path, data = _users_file(folder)
    entries = [u for u in data.get("users", []) if u.get("name") != name]
    if len(entries) == len(data.get("users", [])):
        raise click.ClickException(f"no user '{name}' in {path}")
    _write_users(path, {"users": entries})


# -- client commands ---------------------------------------------------------------------------


def _client_call(server: str, token: str | None, action: Any, **options: Any) -> Any:
    """Connect, run ``action(client)``, close; map failures to messages and exit codes.

    :param options: more :class:`~tieline.client.Client` options (``follow_active``).
    """
    import asyncio

    from .client import Client, ConnectionLost
    from .errors import RequestError

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
    from .errors import NotFound

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
    from .errors import NotFound, OutOfRange

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

    from .client import Client, ConnectionLost
    from .errors import RequestError

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


# -- keys --------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage the cluster key that authenticates the nodes of a cluster to each other."""


@keys.command("generate")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="cluster.key", show_default=True,
              help="File name of the key (the failover block's \"key\").")
@click.option("--force", is_flag=True,
              help="Replace an existing key (then copy the new one to every node).")
def keys_generate(folder: Path, name: str, force: bool) -> None:
    """Make a new cluster key in DIR (NAME, mode 0600, and NAME.pub); copy it to every node."""
    from .errors import TielineError
    from .peerlink import generate_cluster_key, load_cluster_key

    try:
        path = generate_cluster_key(folder, name, force=force)
        fingerprint = load_cluster_key(path).get_fingerprint()
    except TielineError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"tieline: cluster key written to {path} (and {path.name}.pub), "
               f"fingerprint {fingerprint}")
    click.echo("Copy it (keeping mode 0600) into the settings folder of every node of the "
               "cluster.")


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
    from .transports import parse_hostport

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
