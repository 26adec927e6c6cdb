"""Settings replication: one writer (the main), every other node follows, versioned.

The files every node of a cluster shares (the users file, ``salvos.json``, ``labels.json``;
``tieline.json`` stays each node's own) are sent by the main to its peers whenever they
change and whenever a peer reports an older version (a peer that was away catches up). A
receiver checks the whole result first, with its own ``tieline.json``, exactly as a start
would; only then does it write each file atomically (the previous version kept) and reload.
An invalid or older snapshot changes nothing.

Versions are a counter persisted in the state folder, with a digest of the files so that
two different contents never share a version unnoticed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from ..errors import SettingsError
from ..settings.jsonfile import JsonFileError, load_json, write_json_atomic
from ..settings.loader import load_settings

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)


class SettingsReplicator:
    """Versioned settings snapshots between the nodes of a cluster.

    :param node: this node.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.path = node.state_folder / "settings_version.json"
        self.version = 0
        self.digest = ""
        try:
            data = load_json(self.path).data
            self.version = int(data.get("version", 0))
            self.digest = str(data.get("digest", ""))
        except (JsonFileError, AttributeError, TypeError, ValueError):
            pass

    def files(self) -> dict[str, str | None]:
        """The shared files' texts now (None for a file that does not exist)."""
        folder = self.node.settings.folder
        out: dict[str, str | None] = {}
        for name in self.node.shared_files():
            path = folder / name
            out[name] = path.read_text(encoding="utf-8") if path.is_file() else None
        return out

    @staticmethod
    def _digest(files: dict[str, str | None]) -> str:
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()

    def _persist(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"version": self.version, "digest": self.digest},
                          keep_previous=False)

    def bump(self) -> dict[str, Any]:
        """The writer's files changed: a new version; the snapshot to send."""
        files = self.files()
        digest = self._digest(files)
        if digest != self.digest:
            self.version += 1
            self.digest = digest
            self._persist()
        return self.snapshot(files)

    def snapshot(self, files: dict[str, str | None] | None = None) -> dict[str, Any]:
        files = self.files() if files is None else files
        if self._digest(files) != self.digest:  # changed behind our back (edited by hand)
            return self.bump()
        return {"type": "settings", "version": self.version, "digest": self.digest,
                "files": files}

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply a snapshot from the writer if it is newer and valid; True if applied."""
        version, files = message.get("version"), message.get("files")
        if not isinstance(version, int) or not isinstance(files, dict):
            log.warning("ignoring a malformed settings snapshot from %s", message.get("node"))
            return False
        if version <= self.version and message.get("digest") == self.digest:
            return False
        if version < self.version:
            log.warning("ignoring settings version %d from %s: this node has %d", version,
                        message.get("node"), self.version)
            return False
        allowed = set(self.node.shared_files())
        if not set(files) <= allowed or not all(
                isinstance(t, str) or t is None for t in files.values()):
            log.warning("ignoring a settings snapshot from %s naming files other than %s",
                        message.get("node"), ", ".join(sorted(allowed)))
            return False
        folder = self.node.settings.folder
        try:  # the whole folder as it would be, checked as a start would check it
            load_settings(folder, self.node.plugins, replace=files)
        except SettingsError as exc:
            log.error("settings version %d from %s not applied: %s", version,
                      message.get("node"), exc)
            return False
        for name, text in files.items():
            if text is None:
                (folder / name).unlink(missing_ok=True)
            else:
                write_json_atomic(folder / name, json.loads(text))
        self.version = version
        self.digest = str(message.get("digest", ""))  # the writer's, whatever our formatting
        self._persist()
        try:
            self.node.reload()
        except SettingsError as exc:  # cannot happen: checked above
            log.error("settings reload after replication failed: %s", exc)
        log.info("settings version %d from %s applied", version, message.get("node"))
        return True
