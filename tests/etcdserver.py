"""A real, throwaway, single-member etcd for tests.

:class:`EtcdServer` runs the installed ``etcd`` binary (Debian's etcd-server, 3.4) on random
free ports with a temporary data directory, and removes everything when stopped::

    with EtcdServer() as etcd:
        client = EtcdClient([etcd.url])

* Nothing of the machine's own etcd is touched: the environment is scrubbed of ``ETCD_*``
  variables (etcd reads its configuration from them), the ports are random (never
  2379/2380) and the data directory is a fresh temporary one.
* ``--heartbeat-interval 50 --election-timeout 500``: etcd raises a lease's TTL to at least
  1.5 election timeouts, so with these flags a TTL of 1 s is granted as asked (with the
  defaults it would become 2 s). The member also elects itself leader sooner.
* etcd logs (zap, level warn) go to a file; :meth:`EtcdServer.log` returns it and a failed
  start raises with its tail.
* :meth:`EtcdServer.pause` / :meth:`EtcdServer.resume` stop and continue the process
  (SIGSTOP/SIGCONT): the kernel still accepts connections, but nothing answers.
* ``listen_host`` and ``extra_client_hosts`` make it listen on other addresses (for example
  the addresses of network namespaces' veth ends); ``command_prefix`` runs it through
  another command (for example ``["ip", "netns", "exec", NS]``).

Policy for a missing binary (:func:`require_etcd`): tests skip with the reason, except when
the environment says ``CI=true``, where they fail: CI installs etcd-server itself
(``tests/run``), so a missing binary there is a defect, not a reason to skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

DEFAULT_BINARY = "/usr/bin/etcd"
START_TIMEOUT_S = 20.0


def etcd_binary() -> str | None:
    """The etcd executable to run: on PATH, else Debian's, else None."""
    found = shutil.which("etcd")
    if found:
        return found
    if os.access(DEFAULT_BINARY, os.X_OK):
        return DEFAULT_BINARY
    return None


def etcd_unavailable_reason() -> str | None:
    """Why no etcd can be started here, or None when the binary exists."""
    if etcd_binary() is None:
        return ("the etcd binary is not installed (Debian package etcd-server; "
                "tests/run installs it)")
    return None


def in_ci() -> bool:
    """The environment says this is a CI run (``CI=true``, as GitHub and GitLab set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require_etcd() -> None:
    """Skip the calling test when etcd is missing, or fail it in CI (see the module doc)."""
    import pytest  # only tests call this; the server itself needs no pytest

    reason = etcd_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port(host: str) -> int:
    """A TCP port free on ``host`` a moment ago (probed on loopback when ``host`` is not an
    address of this network namespace, as when etcd runs in another one)."""
    for probe in (host, "127.0.0.1"):
        try:
            with socket.socket(socket.AF_INET6 if ":" in probe else socket.AF_INET) as sock:
                sock.bind((probe, 0))
                return sock.getsockname()[1]
        except OSError:
            continue
    raise OSError(f"no free port on {host}")


def _http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class EtcdServer:
    """One etcd member, started by :meth:`start` and removed by :meth:`stop`.

    :param listen_host: the address clients (and the peer URL) use; ``url`` points there.
    :param extra_client_hosts: more addresses to accept clients on (same port).
    :param log_path: where etcd's log goes (default: in the temporary directory, which
        :meth:`stop` removes; the text stays readable with :meth:`log`).
    :param command_prefix: run etcd through this command (e.g. ``ip netns exec NS``).
    :param name: the member's name.
    """

    def __init__(self, *, listen_host: str = "127.0.0.1",
                 extra_client_hosts: Sequence[str] = (), log_path: Path | str | None = None,
                 command_prefix: Sequence[str] = (), name: str = "tieline-test") -> None:
        self.listen_host = listen_host
        self.extra_client_hosts = list(extra_client_hosts)
        self.command_prefix = list(command_prefix)
        self.name = name
        self._log_path = Path(log_path) if log_path is not None else None
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._client_port = 0
        self._peer_port = 0
        self._paused = False
        self._log_text = ""  #: the log, kept when stop() removed its file

    # -- addresses ---------------------------------------------------------------------------
    @property
    def client_port(self) -> int:
        if not self._client_port:
            raise RuntimeError("etcd is not started")
        return self._client_port

    @property
    def peer_port(self) -> int:
        if not self._peer_port:
            raise RuntimeError("etcd is not started")
        return self._peer_port

    @property
    def url(self) -> str:
        """``http://LISTEN_HOST:CLIENT_PORT``, the endpoint to give a client."""
        return _http_url(self.listen_host, self.client_port)

    @property
    def urls(self) -> list[str]:
        """Every client URL: ``url`` first, then one per extra client host."""
        return [_http_url(h, self.client_port) for h in [self.listen_host,
                                                         *self.extra_client_hosts]]

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("etcd is not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- life --------------------------------------------------------------------------------
    def start(self) -> EtcdServer:
        """Start etcd and wait until ``/health`` says healthy.

        :raises RuntimeError: the binary is missing, or etcd did not become healthy within
            20 s (the message ends with the log's tail).
        """
        if self._process is not None:
            raise RuntimeError("etcd is already started")
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError(etcd_unavailable_reason())
        self._workdir = Path(tempfile.mkdtemp(prefix="tieline-etcd-"))
        if self._log_path is None:
            self._log_path = self._workdir / "etcd.log"
        for attempt in range(3):  # the random ports may be taken between probe and bind
            self._client_port = _free_port(self.listen_host)
            self._peer_port = _free_port(self.listen_host)
            while self._peer_port == self._client_port:
                self._peer_port = _free_port(self.listen_host)
            self._spawn(binary, attempt)
            try:
                self._wait_healthy()
                return self
            except RuntimeError as exc:
                in_use = "address already in use" in self.log().lower()
                self._terminate()
                if not in_use or attempt == 2:
                    self._remove_workdir()
                    self._client_port = self._peer_port = 0
                    raise exc from None
        raise AssertionError("unreachable")

    def _spawn(self, binary: str, attempt: int) -> None:
        assert self._workdir is not None and self._log_path is not None
        data_dir = self._workdir / f"data{attempt}"
        peer = _http_url(self.listen_host, self._peer_port)
        client_urls = ",".join(self.urls)
        args = [
            *self.command_prefix, binary,
            "--name", self.name,
            "--data-dir", str(data_dir),
            "--listen-client-urls", client_urls,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ETCD")}
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as log:
            log.write(f"--- {' '.join(args)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=self._workdir, start_new_session=True)
        self._paused = False

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(f"etcd exited with status {code} while starting; log:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                    body = answer.read()
                if json.loads(body).get("health") == "true":
                    return
                last = body.decode(errors="replace")
            except (OSError, ValueError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"etcd at {self.url} not healthy after {START_TIMEOUT_S:.0f} s "
                           f"(last: {last}); log:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop etcd (SIGTERM, then SIGKILL after 5 s) and remove its data (idempotent)."""
        self._terminate()
        self._remove_workdir()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            if self._paused:  # a stopped process only acts on the SIGTERM once continued
                process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._paused = False

    def _remove_workdir(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is None:
            return
        if self._log_path is not None and self._log_path.is_relative_to(workdir):
            self._log_text = self.log()
            self._log_path = None
        shutil.rmtree(workdir, ignore_errors=True)

    def pause(self) -> None:
        """Freeze etcd (SIGSTOP): connections are accepted by the kernel, none answered.

        Returns once every thread is stopped: the signal is delivered asynchronously, and
        etcd answers a request in about a millisecond, so without this wait a request sent
        right after pause() may still be answered.
        """
        if not self.running:
            raise RuntimeError("etcd is not running")
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + 5
        while not self._all_threads_stopped():
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd (pid {self.pid}) did not stop on SIGSTOP")
            time.sleep(0.001)

    def _all_threads_stopped(self) -> bool:
        """Every thread of the process is in state T (stopped); True where /proc is not."""
        try:
            tasks = list(Path(f"/proc/{self.pid}/task").iterdir())
        except OSError:
            return True
        for task in tasks:
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue  # the thread ended
            if stat[stat.rindex(")") + 2] not in "Tt":
                return False
        return True

    def resume(self) -> None:
        """Let a paused etcd go on (SIGCONT)."""
        if not self.running:
            raise RuntimeError("etcd is not running")
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    # -- logs --------------------------------------------------------------------------------
    def log(self) -> str:
        """Everything etcd logged so far (after stop(), what it logged until then)."""
        if self._log_path is not None and self._log_path.exists():
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        return self._log_text

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> EtcdServer:
        if self._process is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._client_port else "not started"
        return f"<EtcdServer {where}>"
