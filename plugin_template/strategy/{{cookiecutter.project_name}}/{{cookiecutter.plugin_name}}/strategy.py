"""The failover strategy ``{{cookiecutter.strategy_name}}``: the active node is the one that holds
an exclusive lock on a file every node opens.

The judge is the kernel. At most one open file holds an exclusive ``flock`` on a file, and
the kernel releases it when its holder closes it or dies, ``kill -9`` included. No timer
decides who is active, so two nodes never both believe they hold it.

The algorithm, all of it:

* **Standby.** Every ``poll_ms`` a standby node tries the lock without waiting. While the
  lock is taken, it reads the holder record (``PATH.holder``, see :mod:`.record`). It then
  shows clients and ``tieline status`` where the active node is. At start, a backup first
  waits ``backup_grace_ms``, so that a main started at the same time wins.
* **Taking over.** A node that gets the lock first connects every router and reads its
  whole state (``node.connect_all_links``): the router is the truth, and nothing remembered
  is pushed to it. If a router stays out of reach for ``connect_timeout_ms``, the node lets
  the lock go and tries again later; it says why once. Otherwise it takes an epoch above
  the record's and its own (persisted before use: ``node.epochs.next``). It writes the
  record atomically and becomes active.
* **Active.** Every ``poll_ms`` the active node checks that the file at ``path`` is still
  the file it locked. Someone may have deleted or replaced it, and then another node could
  lock the new file. Each check that passes moves its fence (``failover.fence_until``)
  one *fence window* ahead: two polls, and at least :data:`MIN_FENCE_S`, so that a busy
  event loop does not refuse requests. A node whose check did not run in time (the
  process was frozen) refuses requests until its next check passes. A node that finds
  the file gone stops being active at once.
* **A node that locked another file** than the one the record names (the file was
  removed or replaced since the last holder took it) waits one fence window before it
  acts. By then that holder has checked, or its fence has run out.
* **Stopping.** The node stops acting first, then lets the lock go. The next node takes
  over within one ``poll_ms``.

**Where it fits:** nodes on one machine, such as a second tieline process as a hot
standby (for upgrades, or for a controller that crashes). Also machines that share a
cluster filesystem whose locks are coherent (GFS2, OCFS2). Network filesystems (NFS, SMB)
are not: a client cut from its server can keep believing it holds a lock the server gave
to another. Across machines use tieline's ``lease`` or ``etcd`` strategies. This module
is the template's example of the strategy interface.

**No switch back.** The node that holds the lock keeps it; ``tieline failover
switch-back`` is refused. To hand over, restart the active node.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tieline import LogOnce, Role, State, Strategy, write_json_atomic

from .record import Holder, RecordError, decode

if TYPE_CHECKING:
    from tieline import Node

log = logging.getLogger(__name__)

#: the shortest fence window, in seconds (see the module docstring)
MIN_FENCE_S = 1.0


class LockStrategy(Strategy):
    """The strategy of ``"failover": {"strategy": "{{cookiecutter.strategy_name}}",
    "path": "/run/tieline/studio.lock"}``."""

    name = "{{cookiecutter.strategy_name}}"
    settings_schema: ClassVar[dict[str, Any]] = {
        "properties": {
            "path": {
                "description": "The lock file: the same absolute path on every node (created "
                               "if missing). The holder record is written beside it, "
                               "as PATH.holder.",
                "type": "string", "minLength": 1,
            },
            "poll_ms": {
                "description": "How often a standby node tries the lock, and how often the "
                               "active node checks that it still holds it.",
                "type": "integer", "minimum": 10, "maximum": 10000, "default": 200,
            },
            "backup_grace_ms": {
                "description": "At start, a backup waits this long before it tries the lock, "
                               "so that a main started at the same time wins.",
                "type": "integer", "minimum": 0, "maximum": 60000, "default": 1000,
            },
            "connect_timeout_ms": {
                "description": "How long a node that got the lock waits for every router's "
                               "state before it lets the lock go and tries again later.",
                "type": "integer", "minimum": 100, "maximum": 60000, "default": 5000,
            },
        },
        "required": ["path"],
    }

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        path = options.get("path")
        if isinstance(path, str) and not os.path.isabs(path):
            return [("path", f"'{path}' is a relative path; give the absolute path every node "
                             "shares, e.g. '/run/tieline/studio.lock'")]
        return []

    def __init__(self, node: Node, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        self.path = Path(options["path"])
        self.record_path = self.path.with_name(self.path.name + ".holder")
        self.poll_s: float = options.get("poll_ms", 200) / 1000
        self.grace_s: float = options.get("backup_grace_ms", 1000) / 1000
        self.connect_timeout_s: float = options.get("connect_timeout_ms", 5000) / 1000
        self.fence_s = max(2 * self.poll_s, MIN_FENCE_S)
        self.me = node.settings.node_name
        self.role = node.settings.role
        self.clock = node.failover.clock
        #: the open lock file while this node holds the lock
        self.fd: int | None = None
        #: the holder this standby node last reported following
        self._following: Holder | None = None
        #: problems logged once, until they clear
        self._said = LogOnce(log, max_keys=16)

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        if self.active:  # a standalone node starts active; here, only the holder is
            self.failover.update(state=State.STANDBY)
        try_from = self.clock() + (self.grace_s if self.role is Role.BACKUP else 0.0)
        try:
            while True:
                if self.fd is not None:
                    await self._check_held()
                elif self.clock() >= try_from:
                    await self._try_to_take()
                else:
                    self._follow()
                await asyncio.sleep(self.poll_s)
        finally:
            await self._let_go("tieline is stopping")

    async def close(self) -> None:
        self._unlock()

    # -- standby -------------------------------------------------------------------------
    async def _try_to_take(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._say("open", f"cannot open the lock file {self.path} ({exc.strerror}); "
                              "create its folder and let tieline's user write there")
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another node holds it
            os.close(fd)
            self._follow()
            return
        except OSError as exc:
            os.close(fd)
            self._say("lock", f"cannot lock {self.path} ({exc.strerror}); use a filesystem "
                              "with working locks (a local one)")
            return
        self.fd = fd
        self._said.clear("open")
        self._said.clear("lock")
        previous = self._read_record()
        stat = os.fstat(fd)
        file = f"{stat.st_dev}:{stat.st_ino}"
        if previous is not None and previous.file != file:
            # the file was replaced since the last holder locked it, and that holder may
            # not have noticed yet: give it time to check (or its fence to run out)
            log.warning("%s was replaced since '%s' locked it; waiting %.1f s before "
                        "taking over", self.path, previous.node, self.fence_s)
            await asyncio.sleep(self.fence_s)
        if not await self.node.connect_all_links(self.connect_timeout_s):
            self._say("reach", "not taking over: this node does not reach every router "
                               f"(offline: {', '.join(self.node.offline_routers())}); "
                               "trying again")
            self._unlock()
            return
        self._said.clear("reach")
        if not self._still_ours():  # the file changed while we connected
            self._unlock()
            return
        epoch = self.node.epochs.next(seen=previous.epoch if previous else 0)
        urls = self.node.api_urls()
        write_json_atomic(self.record_path,
                          Holder(self.me, str(self.role), epoch, urls[0] if urls else None,
                                 file).to_json(), keep_previous=False)
        self.failover.fence_until = self.clock() + self.fence_s
        self.failover.update(state=State.ACTIVE, epoch=epoch, active=None)
        self._following = None
        took_over = previous is not None and previous.node != self.me
        log.log(logging.WARNING if took_over else logging.INFO,
                "this node is now active (epoch %d): it holds the lock on %s%s", epoch,
                self.path, f", after '{previous.node}'" if took_over and previous else "")

    def _follow(self) -> None:
        """Show where the active node is, from the holder record."""
        holder = self._read_record()
        if holder is None or holder.node == self.me:
            self.failover.update(active=None)
            return
        changes: dict[str, Any] = {"active": holder.url, "epoch": holder.epoch}
        if holder.role == "main":
            changes["main"] = holder.url
        self.failover.update(**changes)
        if holder != self._following:
            self._following = holder
            log.info("standby: '%s' holds the lock on %s (epoch %d, clients go to %s)",
                     holder.node, self.path, holder.epoch, holder.url or "no URL")

    def _read_record(self) -> Holder | None:
        try:
            return decode(self.record_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, RecordError) as exc:
            self._say("record", f"{self.record_path} is not a holder record ({exc}); it is "
                                "rewritten by the next node that becomes active")
            return None

    # -- active --------------------------------------------------------------------------
    async def _check_held(self) -> None:
        if self._still_ours():
            self.failover.fence_until = self.clock() + self.fence_s
        else:
            await self._let_go(f"the lock file {self.path} was removed or replaced; never "
                               "remove it while nodes run")

    def _still_ours(self) -> bool:
        """Whether the file at ``path`` is the file this node locked."""
        if self.fd is None:
            return False
        try:
            now, mine = os.stat(self.path), os.fstat(self.fd)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    async def _let_go(self, why: str) -> None:
        """Stop acting, then release the lock (in that order)."""
        if self.active:
            self.failover.fence_until = None
            self.failover.update(state=State.STANDBY, active=None)
            log.warning("this node is now standby: %s", why)
        self._unlock()
        await self.node.close_cold_links()

    def _unlock(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the lock
            self.fd = None

    def _say(self, key: str, message: str) -> None:
        """Log a problem once, until it clears (its repeats at DEBUG)."""
        self._said.log(key, logging.WARNING, "%s", message)
