"""Base classes for client API plugins and for third-party API commands."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

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

    def __init__(self, node: Node, options: dict[str, Any]) -> None:
        self.node = node
        self.options = options

    @classmethod
    def check(cls, options: dict[str, Any],
              routers: Mapping[str, RouterSpec]) -> list[tuple[str, str]]:
        """Problems of an ``apis`` entry that its schema cannot state (a router or level it
        names that does not exist …), as ``(key, message)`` pairs; ``tieline validate`` and
        every start report them with file, line and path.

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
