"""Every error tieline raises on purpose.

The tree::

    TielineError                      base of everything below
    ├── SettingsError                 a settings folder or file is invalid (.problems)
    ├── JsonFileError                 one JSON file cannot be read (.problem; settings/jsonfile.py)
    ├── ClusterKeyError               the cluster key is missing or unusable (.path; cluster/peerlink.py)
    ├── TlsFileError                  a TLS certificate or key is unusable (.which; apis.py)
    ├── PeerLinkError                 the peer link failed (.peer; cluster/peerlink.py)
    │   ├── PeerTimeout               a peer did not answer in time (also a TimeoutError)
    │   └── PeerRequestRefused        a peer answered a request with an error (.code)
    ├── PluginError                   a plugin failed at import or in a hook (.plugin)
    ├── PluginKitError                a plugin template cannot be rendered (kit/template.py)
    ├── RemoteProtocolError           a peer sent bytes a codec cannot parse (.data)
    ├── LinkError                     a transport could not connect or broke (.reason)
    └── RequestError                  a client request was refused (.code, .field)
        ├── InvalidRequest            malformed or failing its schema        code "invalid"
        ├── NotFound                  unknown router, level, salvo, user      code "not_found"
        ├── OutOfRange                a number outside the router's size     code "out_of_range"
        ├── NotAuthenticated          no or unknown token                    code "unauthenticated"
        ├── PermissionDenied          permission level too low               code "forbidden"
        ├── Protected                 protect/lock held by someone else      code "protected"
        ├── Refused                   a device or a policy plugin said no    code "refused"
        ├── RouterOffline             the router's link is down              code "offline"
        ├── ConfirmTimeout            no tally confirmed the request in time code "timeout"
        ├── NodeStandby               this node is standby (.active)         code "standby"
        ├── ReadOnly                  settings may not be written now        code "read_only"
        └── NotSaved                  a settings file could not be written   code "not_saved"

Messages name the thing, the expectation and the fix; data stays available as attributes.
"""

from __future__ import annotations

from dataclasses import dataclass


class TielineError(Exception):
    """Base class of every error tieline raises on purpose."""


@dataclass(frozen=True, slots=True)
class SettingsProblem:
    """One problem in one settings file.

    :param file: the file's name relative to the settings folder (``tieline.json``).
    :param line: 1-based line, or 0 when the problem concerns the whole file.
    :param column: 1-based column, or 0 when unknown.
    :param path: JSON path of the offending value (``$.routers[0].sources``).
    :param message: what is wrong and what was expected.
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}"


class SettingsError(TielineError):
    """A settings folder could not be loaded; ``problems`` lists every problem found."""

    def __init__(self, folder: object, problems: list[SettingsProblem]) -> None:
        self.folder = folder
        self.problems = list(problems)
        lines = [f"settings folder {folder} has {len(self.problems)} problem(s):"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class PluginError(TielineError):
    """A plugin failed to import, failed validation, or raised in a hook."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin '{plugin}': {message}")


class RemoteProtocolError(TielineError):
    """A peer sent bytes that a codec cannot parse.

    The only exception a codec raises on bad input; anything else is a bug in the codec.
    """

    def __init__(self, message: str, data: bytes = b"") -> None:
        self.data = data
        super().__init__(message)


class LinkError(TielineError):
    """A transport could not connect, or the connection broke."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RequestError(TielineError):
    """A client request was refused. ``code`` is stable for programs; ``field`` names the input."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)

    def to_dict(self) -> dict[str, object]:
        """The error as the API sends it."""
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class InvalidRequest(RequestError):
    code = "invalid"


class NotFound(RequestError):
    code = "not_found"


class OutOfRange(RequestError):
    code = "out_of_range"


class NotAuthenticated(RequestError):
    code = "unauthenticated"


class PermissionDenied(RequestError):
    code = "forbidden"


class Protected(RequestError):
    code = "protected"

    def __init__(self, message: str, *, owner: str, field: str | None = None) -> None:
        self.owner = owner
        super().__init__(message, field=field)

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["owner"] = self.owner
        return out


class Refused(RequestError):
    code = "refused"


class RouterOffline(RequestError):
    code = "offline"


class ConfirmTimeout(RequestError):
    code = "timeout"


class NodeStandby(RequestError):
    code = "standby"

    def __init__(self, message: str, *, active: str | None) -> None:
        self.active = active
        super().__init__(message)

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["active"] = self.active
        return out


class ReadOnly(RequestError):
    code = "read_only"


class NotSaved(RequestError):
    """A settings file could not be written (a full disk, a read-only filesystem, lost
    permissions): nothing changed, neither on disk nor in the node. Not a bug in tieline:
    the machine's state, which the message names."""

    code = "not_saved"
