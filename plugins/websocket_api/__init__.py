"""WebSocket JSON API: the client API of tieline (``{"type": "websocket"}`` in ``apis``)."""

from tieline import hookimpl

from .server import WebSocketApi


@hookimpl
def tieline_client_apis() -> list[type]:
    return [WebSocketApi]
