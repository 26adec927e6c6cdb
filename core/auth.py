"""Users, tokens and permission levels.

Users live in the users file (``auth.users_file``): a name, a permission level (1 watch,
2 route, 3 administer) and the SHA-256 of the user's token. Tokens themselves are never
stored; ``tieline users add`` prints a new one once. A client on the loopback interface that
sends no token gets ``auth.loopback_anonymous_level`` (0, no access, unless settings say).
A client API may withhold that level from clients it knows more about: the WebSocket API
answers a token-less hello itself, without asking the :class:`Authenticator`, when it
comes from a web page whose origin is not a loopback address or ``localhost`` (a foreign
name resolving to 127.0.0.1, DNS rebinding; plugins/websocket_api/origins.py).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import NotAuthenticated
from .model import Permission, Principal


@dataclass(frozen=True, slots=True)
class User:
    """One user of the users file."""

    name: str
    level: Permission
    token_sha256: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "level": int(self.level), "token_sha256": self.token_sha256}


def new_token() -> str:
    """A new random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (an IP, with or without ``%scope``) is a loopback address."""
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Turns a token (or its absence) and a peer address into a :class:`Principal`.

    :param users: the users of the users file.
    :param loopback_anonymous_level: level for token-less loopback clients (0 = refuse).
    """

    def __init__(self, users: Iterable[User], loopback_anonymous_level: int = 0) -> None:
        self.users = list(users)
        self.loopback_anonymous_level = Permission(loopback_anonymous_level)

    def authenticate(self, token: str | None, address: str | None) -> Principal:
        """The principal for a token, or raise :class:`NotAuthenticated`."""
        if token:
            digest = hash_token(token)
            found = None
            for user in self.users:  # compare with every user in constant time
                if hmac.compare_digest(user.token_sha256, digest):
                    found = user
            if found is None:
                raise NotAuthenticated("unknown token; ask an administrator for a valid one",
                                       field="token")
            return Principal(found.name, found.level, address)
        if self.loopback_anonymous_level > Permission.NONE and is_loopback(address):
            return Principal(f"anonymous@{address}", self.loopback_anonymous_level, address)
        raise NotAuthenticated(
            "a token is required: send it in hello's 'token' field (tieline --token or "
            "TIELINE_TOKEN)",
            field="token",
        )
