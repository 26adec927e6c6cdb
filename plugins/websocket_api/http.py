"""The operator's panel over plain HTTP, on the WebSocket API's own address.

The API listens on one address for both: a request carrying ``Upgrade: websocket`` is a
WebSocket handshake (any path, as before); any other request is answered here, from
websockets' ``process_request`` hook, and the connection is closed after the response
(``Connection: close``: a browser opens one connection per file, the panel has a dozen).

What is served:

- ``GET /``: the panel's ``index.html``;
- ``GET /panel/<path>``: the file ``<path>`` of the panel folder
  (``plugins/websocket_api/panel/``), a query string ignored;
- anything else: 404, with no directory listing; ``HEAD`` is answered like ``GET``
  without the body, any other method 405.

The folder is read once, when the API starts (:meth:`PanelFiles.load`), and the files are
served from memory: a file changed afterwards is served as it was until the node restarts.
Only what the load accepts can ever be served: a regular file whose real path lies inside
the folder, reached through no symbolic link (a symbolic link, to a file or to a folder,
inside or outside, is skipped and logged), whose name is plain (letters, digits, ``-``,
``_`` and dots, not starting with a dot: no hidden files) and whose extension has a
content type in :data:`CONTENT_TYPES`. A request is then a look-up of its path, taken
literally, in that table: nothing is decoded, joined or resolved, so ``/../``,
``%2e%2e``, ``%2f``, a backslash, NUL or an absolute path names no file and gets 404. The
path's form is also checked segment by segment before the look-up, so that this stays true
whatever the table holds.

Every response, errors and refusals included (:func:`secure`), carries a strict
Content-Security-Policy (scripts, styles and images only from the panel itself, no inline
script or style, no framing, no forms, WebSocket connections to any node of the cluster),
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
``X-Frame-Options: DENY``, ``Cross-Origin-Resource-Policy: same-origin``, over TLS
``Cross-Origin-Opener-Policy: same-origin`` too (a browser ignores it on a plain-HTTP
origin that is not loopback, and says so in the console of every LAN panel), and
``Cache-Control: no-cache`` (the browser
asks again each time; an unchanged file is answered 304 by its ``ETag``).
"""

from __future__ import annotations

import email.utils
import hashlib
import http
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = ["CONTENT_SECURITY_POLICY", "CONTENT_TYPES", "SECURITY_HEADERS", "TLS_HEADERS",
           "PanelFiles", "StaticFile", "is_websocket", "respond", "secure"]

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: carried by every HTTP response of the API
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-cache"),
)
#: carried too by every HTTP response of an API served over TLS (browsers apply them only
#: to secure origins, and complain of them elsewhere)
TLS_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
#: the files served, by extension (lower case, as the file is named); any other is not
CONTENT_TYPES: Mapping[str, str] = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "json": "application/json",
    "woff2": "font/woff2",
    "txt": "text/plain; charset=utf-8",
}
#: the URL prefix of the panel's files
PREFIX = "/panel/"
#: a file larger than this is not served (the panel's files are a few kB)
MAX_FILE_BYTES = 8 * 1024 * 1024
#: folders deeper than this inside the panel folder are not read
MAX_DEPTH = 8
#: one segment of a file's path: no leading dot (so no ``..``), no ``%``, ``\\`` or NUL
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file of the panel, as served."""

    body: bytes
    content_type: str
    etag: str  #: a strong entity tag, quoted


class PanelFiles:
    """The panel's files, read once, by the path they are asked for (``js/main.js``).

    :param folder: where they were read from (for logs); None for none.
    :param files: the files by path relative to the folder, ``/``-separated.
    """

    def __init__(self, folder: Path | None, files: Mapping[str, StaticFile]) -> None:
        self.folder = folder
        self.files = dict(files)

    def __len__(self) -> int:
        return len(self.files)

    def get(self, name: str) -> StaticFile | None:
        return self.files.get(name)

    @classmethod
    def load(cls, folder: Path) -> PanelFiles:
        """Read every file of ``folder`` that may be served (see the module); log what is
        skipped and why. A missing folder gives no files (and a warning): the API runs
        without its panel."""
        try:
            root = Path(os.path.realpath(folder, strict=True))
        except OSError as exc:
            log.warning("web panel: cannot read its folder %s (%s): the panel is not served",
                        folder, exc.strerror or exc)
            return cls(None, {})
        files: dict[str, StaticFile] = {}
        _read_folder(root, root, "", files, 0)
        if "index.html" not in files:
            log.warning("web panel: %s has no index.html: http://…/ answers 404", root)
        return cls(root, files)


def _read_folder(root: Path, folder: Path, prefix: str, files: dict[str, StaticFile],
                 depth: int) -> None:
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        log.warning("web panel: cannot read %s (%s): its files are not served", folder,
                    exc.strerror or exc)
        return
    for entry in entries:
        name = prefix + entry.name
        if entry.name.startswith("."):
            continue  # hidden: editors' and version control's files
        if entry.is_symlink():
            log.warning("web panel: %s is not served: it is a symbolic link (the panel "
                        "serves only regular files inside %s)", name, root)
        elif entry.is_dir(follow_symlinks=False):
            if depth >= MAX_DEPTH:
                log.warning("web panel: %s is not served: more than %d folders deep",
                            name, MAX_DEPTH)
            elif _SEGMENT.fullmatch(entry.name):
                _read_folder(root, Path(entry.path), name + "/", files, depth + 1)
            else:
                log.warning("web panel: %s/ is not served: name it with letters, digits, "
                            "'-', '_' and '.' only", name)
        elif not entry.is_file(follow_symlinks=False):
            log.warning("web panel: %s is not served: not a regular file", name)
        else:
            found = _read_file(root, Path(entry.path), name)
            if found is not None:
                files[name] = found


def _read_file(root: Path, path: Path, name: str) -> StaticFile | None:
    extension = name.rsplit(".", 1)[1] if "." in name.rsplit("/", 1)[-1] else ""
    content_type = CONTENT_TYPES.get(extension)
    if content_type is None:
        log.debug("web panel: %s is not served: no content type for '.%s'", name, extension)
        return None
    if not all(_SEGMENT.fullmatch(part) for part in name.split("/")):
        log.warning("web panel: %s is not served: name it with letters, digits, '-', '_' "
                    "and '.' only", name)
        return None
    real = os.path.realpath(path)
    if os.path.commonpath([real, root]) != str(root):
        log.warning("web panel: %s is not served: it lies outside %s", name, root)
        return None
    try:  # O_NOFOLLOW: a file swapped for a link since the folder was listed is refused
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        log.warning("web panel: %s is not served: %s", name, exc.strerror or exc)
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            log.warning("web panel: %s is not served: not a regular file", name)
            return None
        if info.st_size > MAX_FILE_BYTES:
            log.warning("web panel: %s is not served: %d bytes, more than %d", name,
                        info.st_size, MAX_FILE_BYTES)
            return None
        body = file.read(MAX_FILE_BYTES + 1)
    if len(body) > MAX_FILE_BYTES:
        log.warning("web panel: %s is not served: more than %d bytes", name, MAX_FILE_BYTES)
        return None
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return StaticFile(body, content_type, etag)


# -- requests --------------------------------------------------------------------------------


def is_websocket(request: Request) -> bool:
    """Whether ``request`` asks for a WebSocket (``Upgrade: websocket``): the API's, not
    a file."""
    return any(token.strip().lower() == "websocket"
               for value in request.headers.get_all("Upgrade") for token in value.split(","))


def file_name(target: str) -> str | None:
    """The panel file a request target asks for (``/`` is ``index.html``), or None when it
    names none. The target is taken literally: nothing is decoded.

    >>> file_name("/panel/js/main.js?v=3")
    'js/main.js'
    >>> [file_name(t) for t in ("/panel/../server.py", "/panel/%2e%2e/x", "/panel/", "/x")]
    [None, None, None, None]
    """
    path = target.split("?", 1)[0]
    if path == "/":
        return "index.html"
    if not path.startswith(PREFIX):
        return None
    name = path[len(PREFIX):]
    if not all(_SEGMENT.fullmatch(part) for part in name.split("/")):
        return None
    return name


def secure(headers: Headers, *, tls: bool = False) -> Headers:
    """Add :data:`SECURITY_HEADERS` (and with ``tls`` :data:`TLS_HEADERS`) that
    ``headers`` lacks; return it."""
    for key, value in SECURITY_HEADERS + (TLS_HEADERS if tls else ()):
        if key not in headers:
            headers[key] = value
    return headers


def _response(status: http.HTTPStatus, body: bytes, *, head: bool,
              headers: tuple[tuple[str, str], ...] = ()) -> Response:
    fields = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                      *headers])
    if status is not http.HTTPStatus.NOT_MODIFIED:
        fields["Content-Length"] = str(len(body))
    return Response(status.value, status.phrase, secure(fields), b"" if head else body)


def _error(status: http.HTTPStatus, *, head: bool,
           headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return _response(status, f"{status.value} {status.phrase}\n".encode(), head=head,
                     headers=(("Content-Type", "text/plain; charset=utf-8"), *headers))


def _matches(etag: str, if_none_match: list[str]) -> bool:
    for value in if_none_match:
        for tag in value.split(","):
            tag = tag.strip()
            if tag == "*" or tag.removeprefix("W/") == etag:
                return True
    return False


def respond(request: Request, files: PanelFiles) -> Response:
    """The response to a request that is not a WebSocket handshake."""
    head = request.method == "HEAD"
    if request.method not in ("GET", "HEAD"):
        return _error(http.HTTPStatus.METHOD_NOT_ALLOWED, head=False,
                      headers=(("Allow", "GET, HEAD"),))
    name = file_name(request.path)
    found = files.get(name) if name is not None else None
    if found is None:
        return _error(http.HTTPStatus.NOT_FOUND, head=head)
    headers = (("Content-Type", found.content_type), ("ETag", found.etag))
    if _matches(found.etag, request.headers.get_all("If-None-Match")):
        return _response(http.HTTPStatus.NOT_MODIFIED, b"", head=True, headers=headers)
    return _response(http.HTTPStatus.OK, found.body, head=head, headers=headers)
