"""Base classes for client API plugins and for third-party API commands."""

from __future__ import annotations

import abc
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import TielineError
from .model import Permission, Principal, RouterSpec

if TYPE_CHECKING:
    from .node import Node


class ClientApi(abc.ABC):
    """A client API server: what a plugin returns from ``tieline_client_apis``.

    The node builds one instance per ``apis`` entry of its settings whose ``type`` is
    ``name``, calls :meth:`start` (bind and listen; raise with a clear message on failure),
    and :meth:`close` when it stops.

    :param node: the node it serves.
    :param options: its ``apis`` entry (validated against ``settings_schema``).
    """

    #: the value of ``"type"`` in an ``apis`` entry.
    name: ClassVar[str]
    #: JSON Schema ``properties``/``required`` of the API's own keys in its ``apis`` entry.
    settings_schema: ClassVar[dict[str, Any]] = {}
    #: the message types the API answers itself: an API command of a plugin
    #: (``tieline_api_commands``) may not take one of these names.
    commands: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, node: Node, options: dict[str, Any]) -> None:
        self.node = node
        self.options = options

    @classmethod
    def check(cls, options: dict[str, Any], routers: Mapping[str, RouterSpec]
              ) -> list[tuple[str | tuple[str | int, ...], str]]:
        """Problems of an ``apis`` entry that its schema cannot state (a router or level it
        names that does not exist …), as ``(key, message)`` pairs; ``tieline validate`` and
        every start report them with file, line and path. ``key`` is a key of the entry,
        or the path of a value deeper in it (``("panels", 0, "router")``), so that the
        problem is reported at that value's own line.

        :param routers: the routers of the settings, by id.
        """
        return []

    @abc.abstractmethod
    async def start(self) -> None:
        """Start listening. Raise :class:`tieline.errors.TielineError` saying why it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening and close every connection."""

    def describe(self) -> str:
        """Where clients reach it (``ws://127.0.0.1:8181``)."""
        return f"{self.name} on {self.options.get('listen', '?')}"

    def page_url(self) -> str | None:
        """A page a person opens in a browser to use this node through this API (an
        operator's panel), printed by ``tieline run`` beside :meth:`describe`; None (the
        default) for an API that serves none."""
        return None

    def client_url(self) -> str | None:
        """The URL at which tieline's own clients (the Python client, the panel, the
        ``tieline`` command) reach this node through this API, as the node advertises it
        to its peers; None (the default) for an API that speaks another protocol."""
        return None


Handler = Callable[["Node", Principal, dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class ApiCommand:
    """A command a plugin adds to the client APIs (``tieline_api_commands``).

    :param name: the message ``"type"`` clients send.
    :param schema: JSON Schema of the whole message (``type`` and ``id`` included).
    :param level: permission level required.
    :param handler: ``async handler(node, principal, message) -> dict | None``; the dict is
        the response's ``result``. Raise a :class:`tieline.RequestError` to refuse.
    :param description: one line for the API reference.
    """

    name: str
    schema: dict[str, Any]
    level: Permission
    handler: Handler
    description: str = ""
    plugin: str = field(default="", compare=False)


# -- TLS ---------------------------------------------------------------------------------------


class TlsFileError(TielineError):
    """A TLS certificate or key that settings name cannot be used.

    :ivar which: ``"certificate"`` or ``"key"``: the setting that names the file at fault.
    :ivar name: that file's name as settings give it.
    """

    def __init__(self, which: str, name: str, message: str) -> None:
        self.which = which
        self.name = name
        super().__init__(message)


class _Encrypted(Exception):
    pass


def _no_passphrase() -> bytes:
    raise _Encrypted  # never ask on a terminal: nodes start unattended


def server_tls_context(folder: Path, certificate: str, key: str) -> ssl.SSLContext:
    """A server-side TLS context for ``certificate`` (the chain, PEM) and ``key`` (its
    private key, PEM, unencrypted), file names relative to the settings ``folder``.

    The settings check calls it for every API entry with a ``"tls"`` block (so ``tieline
    validate`` refuses what serving would refuse), and an API calls it when it starts.

    :raises TlsFileError: naming the file at fault and what it should hold.
    """
    paths = {"certificate": Path(folder) / certificate, "key": Path(folder) / key}
    names = {"certificate": certificate, "key": key}
    for which, path in paths.items():
        if not path.is_file():
            what = "not found in the settings folder" if not path.exists() else "is not a file"
            raise TlsFileError(which, names[which], f"file '{names[which]}' {what}")
    try:  # the certificate alone first, to tell a bad certificate from a bad key
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=paths["certificate"])
    except (OSError, ssl.SSLError) as exc:
        raise TlsFileError("certificate", certificate, (
            f"file '{certificate}' holds no PEM certificate{_reason(exc)}; expected the "
            "certificate chain in PEM form (-----BEGIN CERTIFICATE-----)")) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(paths["certificate"], paths["key"], password=_no_passphrase)
    except _Encrypted:
        raise TlsFileError("key", key, (
            f"the private key in '{key}' is encrypted; a node starts unattended, so give it "
            f"unencrypted (openssl pkey -in {key} -out {key}.plain) and keep the file "
            "readable by tieline only")) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError("key", key, (
                f"the key in '{key}' does not belong to the certificate in '{certificate}'; "
                "give the key the certificate was made for")) from None
        if exc.reason not in (None, "PEM_LIB"):  # the pair is readable but refused
            raise TlsFileError("certificate", certificate, (
                f"cannot serve the certificate in '{certificate}' with the key in '{key}'"
                f"{_reason(exc)}")) from None
        raise TlsFileError("key", key, (
            f"file '{key}' holds no PEM private key{_reason(exc)}; expected an unencrypted "
            "private key in PEM form (-----BEGIN PRIVATE KEY-----)")) from None
    except OSError as exc:
        raise TlsFileError("key", key, f"cannot read file '{key}'{_reason(exc)}") from None
    return context


def _reason(exc: BaseException) -> str:
    """`` (the reason)`` of an OpenSSL or OS error, or nothing when it has none."""
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason  # "[SSL] PEM lib (_ssl.c:3926)" says nothing to people
    else:
        reason = getattr(exc, "strerror", None) or str(exc)
    if not reason or reason == "PEM_LIB":
        return ""
    return f" ({str(reason).replace('_', ' ').lower()})"
