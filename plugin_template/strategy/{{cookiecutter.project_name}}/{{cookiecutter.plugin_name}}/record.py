"""The holder record: who holds the lock, with which epoch, and where clients reach it.

Pure (no I/O): :meth:`Holder.to_json` gives what the record file holds and :func:`decode`
reads its bytes back. The strategy writes the record atomically (temporary file, fsync,
rename: ``tieline.write_json_atomic``) while it holds the lock, so that a reader
sees either the old record or the new one, never half of one; the other nodes read it to
show where the active node is and to take an epoch above it when their turn comes.

The file is JSON::

    {"node": "tl-a", "role": "main", "epoch": 7, "url": "ws://10.0.0.7:8181",
     "file": "2049:1835017"}

``url`` is null when the holder serves no WebSocket API. ``file`` names the lock file the
holder locked (device and inode numbers): a node that locks another file at the same path
knows that the file was replaced since. (The system reuses an inode number only once no
process holds the old file open, so a match means that no earlier holder can still hold a
lock on another file.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

#: a record is small; anything bigger is not one
MAX_RECORD = 4096


class RecordError(ValueError):
    """The bytes are not a holder record; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Holder:
    """The node that holds (or last held) the lock.

    :param node: its name (``node.name`` in its settings).
    :param role: its role: ``main``, ``backup`` or ``standalone``.
    :param epoch: the epoch it took when it became active.
    :param url: where its clients reach it, or None.
    :param file: ``"DEVICE:INODE"`` of the lock file it locked.
    """

    node: str
    role: str
    epoch: int
    url: str | None = None
    file: str = ""

    def to_json(self) -> dict[str, object]:
        """What the record file holds."""
        return {"node": self.node, "role": self.role, "epoch": self.epoch, "url": self.url,
                "file": self.file}


def decode(data: bytes) -> Holder:
    """The holder in a record file's bytes.

    :raises RecordError: when the bytes are not a record (never another exception).
    """
    if len(data) > MAX_RECORD:
        raise RecordError(f"{len(data)} bytes, more than a record ({MAX_RECORD})")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecordError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RecordError("expected a JSON object")
    node, role, epoch, url, file = (value.get(k)
                                    for k in ("node", "role", "epoch", "url", "file"))
    if not isinstance(node, str) or not node:
        raise RecordError("'node' must be a non-empty string")
    if role not in ("main", "backup", "standalone"):
        raise RecordError("'role' must be main, backup or standalone")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise RecordError("'epoch' must be an integer ≥ 0")
    if url is not None and not isinstance(url, str):
        raise RecordError("'url' must be a string or null")
    if not isinstance(file, str):
        raise RecordError("'file' must be a string")
    return Holder(node, role, epoch, url, file)
