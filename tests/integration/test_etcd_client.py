"""The etcd client (``tieline.plugins.etcd.client``) against a real etcd 3.4.

Every test gets its own throwaway etcd (the ``etcd`` fixture, tests/etcdserver.py: random
loopback ports, TTL 1 s granted as asked); nothing is mocked. Covered: leases (grant,
keepalive, revoke, expiry), the put-if-absent ``create`` and what it reports when the key is
held, ``delete_if``, ``get_prefix`` and ``delete``, ``watch`` (of a key or a prefix), etcd's
errors as :class:`EtcdError` with their gRPC code, failover across endpoints, and a frozen
etcd (SIGSTOP): a call times out within its timeout and the client recovers on a new
connection once etcd goes on.

No test asserts a tight timing: waits are polls with generous bounds (10 s), and "within its
timeout" allows scheduling slack.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tieline.plugins.etcd.client import EtcdClient, EtcdError, EtcdUnavailable, KeyValue

from ..conftest import free_port
from ..etcdserver import EtcdServer

KEY = "/tieline/test/leader"
T = 5.0  #: timeout of calls that are expected to answer


@pytest.fixture
async def client(etcd):
    client = EtcdClient([etcd.url])
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def second_etcd(etcd, tmp_path):
    """Another, independent etcd (after ``etcd``, so the skip/fail policy applied)."""
    server = EtcdServer(log_path=tmp_path / "etcd2.log", name="second")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def dead_endpoint() -> str:
    """An endpoint where nothing listens (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


async def wait_until_gone(client: EtcdClient, key: str, bound_s: float = 10.0) -> None:
    async with asyncio.timeout(bound_s):
        while (await client.get(key, timeout=T))[0] is not None:
            await asyncio.sleep(0.1)


# -- leases -----------------------------------------------------------------------------------
async def test_grant_gives_the_ttl_asked(client):
    lease, ttl = await client.grant(1, timeout=T)
    assert lease > 0 and ttl == 1  # with the fixture's short election timeout
    other, ttl = await client.grant(7, timeout=T)
    assert other != lease and ttl == 7


async def test_keepalive_returns_the_ttl(client):
    lease, granted = await client.grant(5, timeout=T)
    assert await client.keepalive(lease, timeout=T) == granted == 5
    assert await client.keepalive(lease, timeout=T) == 5  # again, on the same connection


async def test_keepalive_of_a_revoked_lease_returns_0_and_revoke_twice_is_fine(client):
    lease, _ = await client.grant(5, timeout=T)
    created, _, _ = await client.create(KEY, b"node-a", lease, timeout=T)
    assert created
    await client.revoke(lease, timeout=T)
    assert (await client.get(KEY, timeout=T))[0] is None  # revoking deletes its keys at once
    assert await client.keepalive(lease, timeout=T) == 0
    await client.revoke(lease, timeout=T)  # NotFound is not an error here
    await client.revoke(123456789, timeout=T)  # nor a lease that never was
    assert await client.keepalive(lease, timeout=T) == 0


async def test_a_lease_not_renewed_expires_and_its_key_goes(client):
    lease, ttl = await client.grant(1, timeout=T)
    assert ttl == 1
    created, _, revision = await client.create(KEY, b"node-a", lease, timeout=T)
    assert created
    kv, _ = await client.get(KEY, timeout=T)
    assert kv is not None and kv.lease == lease and kv.create_revision == revision
    await wait_until_gone(client, KEY)  # TTL plus the lessor's 0.5 s tick, in practice
    assert await client.keepalive(lease, timeout=T) == 0
    lease2, _ = await client.grant(1, timeout=T)  # the key can be taken again
    assert (await client.create(KEY, b"node-b", lease2, timeout=T))[0]


# -- keys -------------------------------------------------------------------------------------
async def test_create_succeeds_once_then_reports_the_holder(client):
    lease_a, _ = await client.grant(5, timeout=T)
    lease_b, _ = await client.grant(5, timeout=T)
    created, holder, revision = await client.create(KEY, b"node-a", lease_a, timeout=T)
    assert (created, holder) == (True, None)
    assert revision > 0

    created, holder, now = await client.create(KEY, b"node-b", lease_b, timeout=T)
    assert created is False
    assert holder == KeyValue(key=KEY, value=b"node-a", create_revision=revision,
                              mod_revision=revision, lease=lease_a)
    assert now == revision  # a failed transaction changes nothing

    kv, store_revision = await client.get(KEY, timeout=T)
    assert kv == holder and store_revision == revision
    assert await client.get("/tieline/test/absent", timeout=T) == (None, revision)


async def test_put_and_get(client):
    revision = await client.put(KEY, b"\x00\xffbinary", timeout=T)
    kv, _ = await client.get(KEY, timeout=T)
    assert kv == KeyValue(KEY, b"\x00\xffbinary", revision, revision, 0)
    lease, _ = await client.grant(5, timeout=T)
    again = await client.put(KEY, b"v2", lease=lease, timeout=T)
    kv, _ = await client.get(KEY, timeout=T)
    assert kv == KeyValue(KEY, b"v2", revision, again, lease)


async def test_get_prefix_and_delete(client):
    prefix = "/tieline/test/nodes/"
    b = await client.put(prefix + "b", b"2", timeout=T)
    a = await client.put(prefix + "a", b"1", timeout=T)
    await client.put("/tieline/test/nodes0", b"outside", timeout=T)  # "0" sorts after "/"
    await client.put("/tieline/test/node", b"outside", timeout=T)
    kvs, revision = await client.get_prefix(prefix, timeout=T)
    assert kvs == [KeyValue(prefix + "a", b"1", a, a, 0), KeyValue(prefix + "b", b"2", b, b, 0)]
    assert revision == a + 2
    assert await client.delete(prefix + "a", timeout=T) == 1
    assert await client.delete(prefix + "a", timeout=T) == 0
    assert [kv.key for kv in (await client.get_prefix(prefix, timeout=T))[0]] == [prefix + "b"]
    assert await client.get_prefix("/nothing/", timeout=T) == ([], revision + 1)


async def test_delete_if_deletes_only_the_matching_create_revision(client):
    lease, _ = await client.grant(5, timeout=T)
    _, _, revision = await client.create(KEY, b"node-a", lease, timeout=T)
    assert await client.delete_if(KEY, revision + 1, timeout=T) is False
    assert await client.delete_if(KEY, revision - 1, timeout=T) is False
    kv, _ = await client.get(KEY, timeout=T)
    assert kv is not None and kv.create_revision == revision
    assert await client.delete_if(KEY, revision, timeout=T) is True
    assert (await client.get(KEY, timeout=T))[0] is None
    assert await client.delete_if(KEY, revision, timeout=T) is False  # gone already
    # a new key of the same name is another incarnation: the old revision does not match it
    _, _, newer = await client.create(KEY, b"node-b", lease, timeout=T)
    assert await client.delete_if(KEY, revision, timeout=T) is False
    assert (await client.get(KEY, timeout=T))[0].create_revision == newer


async def test_unknown_lease_in_a_txn_put_is_etcd_error_code_5(client):
    with pytest.raises(EtcdError, match="requested lease not found") as caught:
        await client.create(KEY, b"node-a", 987654321, timeout=T)
    assert caught.value.code == 5  # gRPC NotFound
    assert caught.value.status == 404
    with pytest.raises(EtcdError) as caught:
        await client.put(KEY, b"x", lease=987654321, timeout=T)
    assert caught.value.code == 5
    # the client goes on working after an error
    assert (await client.get(KEY, timeout=T))[0] is None
    lease, _ = await client.grant(5, timeout=T)
    assert (await client.create(KEY, b"node-a", lease, timeout=T))[0]


async def test_bad_request_is_etcd_error_code_3(client):
    with pytest.raises(EtcdError) as caught:
        await client.call("/v3/kv/range", {"key": "not base64!"}, timeout=T)
    assert caught.value.code == 3 and caught.value.status == 400  # InvalidArgument


# -- watch ------------------------------------------------------------------------------------
async def test_watch_yields_put_then_delete_in_order(client):
    _, start = await client.get(KEY, timeout=T)
    put_revision = await client.put(KEY, b"v1", timeout=T)
    assert await client.delete_if(KEY, put_revision, timeout=T)
    _, delete_revision = await client.get(KEY, timeout=T)

    events = []
    watch = client.watch(KEY, start + 1)  # history first, then live changes
    try:
        async with asyncio.timeout(10):
            async for event in watch:
                events.append(event)
                if len(events) == 2:
                    live_revision = await client.put(KEY, b"v2", timeout=T)
                if len(events) == 3:
                    break
    finally:
        await watch.aclose()

    put, delete, live = events
    assert (put.kind, put.kv.key, put.kv.value) == ("PUT", KEY, b"v1")
    assert put.kv.create_revision == put.kv.mod_revision == put_revision
    assert (delete.kind, delete.kv.key, delete.kv.mod_revision) == ("DELETE", KEY,
                                                                    delete_revision)
    assert (live.kind, live.kv.value, live.kv.create_revision) == ("PUT", b"v2",
                                                                   live_revision)
    assert put_revision < delete_revision < live_revision
    for event in events:  # the header's revision: the store's when the message was sent
        assert event.revision >= event.kv.mod_revision
    assert [e.revision for e in events] == sorted(e.revision for e in events)


async def test_watch_a_prefix(client):
    prefix = "/tieline/test/nodes/"
    _, start = await client.get(KEY, timeout=T)
    watch = client.watch(prefix, start + 1, prefix=True)
    put_a = await client.put(prefix + "a", b"1", timeout=T)
    await client.put("/tieline/test/nodes0", b"outside", timeout=T)
    deleted = await client.delete(prefix + "a", timeout=T)
    assert deleted == 1
    put_b = await client.put(prefix + "b", b"2", timeout=T)
    try:
        async with asyncio.timeout(10):
            events = [await anext(watch) for _ in range(3)]
    finally:
        await watch.aclose()
    assert [(e.kind, e.kv.key, e.kv.mod_revision) for e in events] == [
        ("PUT", prefix + "a", put_a), ("DELETE", prefix + "a", put_a + 2),
        ("PUT", prefix + "b", put_b)]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_watch_ends_when_etcd_goes(etcd, client, how):
    """SIGKILL cuts the stream mid-response: EtcdUnavailable. SIGTERM lets etcd say so
    first, in the stream (``{"error": {"grpc_code": 14, "message": "transport is closing"}}``
    or, depending on timing, code 1 "grpc: the client connection is closing"), which comes
    out as EtcdError with that code today."""
    _, start = await client.get(KEY, timeout=T)
    watch = client.watch(KEY, start + 1)
    await client.put(KEY, b"v", timeout=T)
    async with asyncio.timeout(10):
        assert (await anext(watch)).kind == "PUT"
        if how == "SIGKILL":
            os.kill(etcd.pid, signal.SIGKILL)
            with pytest.raises(EtcdUnavailable):
                await anext(watch)
        else:
            etcd.stop()
            with pytest.raises((EtcdUnavailable, EtcdError)) as caught:
                await anext(watch)
            if isinstance(caught.value, EtcdError):  # which code depends on the timing
                assert caught.value.code in (1, 14), caught.value  # Canceled, Unavailable
    await watch.aclose()


# -- endpoints --------------------------------------------------------------------------------
async def test_a_dead_endpoint_is_skipped(etcd):
    dead = dead_endpoint()
    client = EtcdClient([dead, etcd.url])
    try:
        lease, ttl = await client.grant(2, timeout=T)
        assert ttl == 2
        assert await client.keepalive(lease, timeout=T) == 2
        _, start = await client.get(KEY, timeout=T)
        watch = client.watch(KEY, start + 1)  # the watch fails over as well
        await client.put(KEY, b"v", timeout=T)
        async with asyncio.timeout(10):
            assert (await anext(watch)).kv.value == b"v"
        await watch.aclose()
    finally:
        await client.close()


async def test_all_endpoints_dead_raises_etcd_unavailable_naming_each(etcd):
    dead = [dead_endpoint(), dead_endpoint()]
    client = EtcdClient(dead)
    with pytest.raises(EtcdUnavailable) as caught:
        await client.grant(1, timeout=T)
    message = str(caught.value)
    assert "no etcd endpoint answered" in message
    for url in dead:
        assert url in message
    with pytest.raises(EtcdUnavailable, match="no etcd endpoint answered"):
        await anext(client.watch(KEY, 0))
    await client.close()


async def test_a_stopped_endpoint_fails_one_call_then_the_next_goes_to_another(
        etcd, second_etcd):
    client = EtcdClient([etcd.url, second_etcd.url])
    try:
        await client.put(KEY, b"first", timeout=T)
        etcd.stop()
        kv, _ = await client.get(KEY, timeout=T)
        assert kv is None  # the second etcd's store, not the first's
        assert await client.put(KEY, b"second", timeout=T) > 0
    finally:
        await client.close()


def test_endpoints_are_checked():
    with pytest.raises(ValueError, match="give at least one etcd endpoint"):
        EtcdClient([])
    with pytest.raises(ValueError, match="expected http://HOST:PORT"):
        EtcdClient(["https://127.0.0.1:2379"])
    with pytest.raises(ValueError, match="port 99999 is out of range; write a port from 1"):
        EtcdClient(["http://127.0.0.1:99999"])
    with pytest.raises(ValueError, match="port 0 is out of range"):  # not the default port
        EtcdClient(["http://127.0.0.1:0"])


# -- a frozen etcd ----------------------------------------------------------------------------
async def test_a_paused_etcd_times_out_and_the_client_recovers_after_resume(etcd, client):
    await client.put(KEY, b"v", timeout=T)
    before = client._conn  # the connection in use (internal, for the "new connection" check)
    assert before is not None
    etcd.pause()
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.get(KEY, timeout=0.5)
        elapsed = time.monotonic() - started
        assert 0.45 <= elapsed < 2.0, elapsed
        # a new client: the kernel accepts the connection, nothing answers
        fresh = EtcdClient([etcd.url])
        with pytest.raises(TimeoutError):
            await fresh.keepalive(1, timeout=0.3)
        await fresh.close()
    finally:
        etcd.resume()
    kv, _ = await client.get(KEY, timeout=T)
    assert kv is not None and kv.value == b"v"
    assert client._conn is not None and client._conn is not before


# -- the test etcd itself (tests/etcdserver.py) -----------------------------------------------
async def test_the_test_etcd_listens_on_extra_hosts_ignores_etcd_env_and_cleans_up(
        etcd, tmp_path, monkeypatch):
    """(``etcd`` is requested for its skip/fail policy only.)"""
    monkeypatch.setenv("ETCD_NAME", "not-this")  # would clash with --name if passed on
    monkeypatch.setenv("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1")
    server = EtcdServer(extra_client_hosts=["127.0.0.2"], log_path=tmp_path / "x.log")
    with server:
        assert server.url == f"http://127.0.0.1:{server.client_port}"
        assert server.urls == [server.url, f"http://127.0.0.2:{server.client_port}"]
        client = EtcdClient([server.urls[1]])
        lease, ttl = await client.grant(1, timeout=T)
        assert ttl == 1
        data = server._workdir
        assert data is not None and data.is_dir()
        server.pause()  # stop() must also end a paused etcd
        await client.close()
    assert not data.exists()
    assert not server.running
    assert "--name tieline-test" in server.log()


# -- bugs found in client.py, fixed: cancelled calls, queued timeouts, closed connections ---
async def test_a_cancelled_call_does_not_leave_its_answer_to_the_next_call(etcd, client):
    await client.put(KEY, b"old", timeout=T)
    etcd.pause()
    try:
        put = asyncio.create_task(client.put(KEY, b"new", timeout=T))
        await asyncio.sleep(0.2)  # the request is written; etcd cannot answer
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
    finally:
        etcd.resume()
    kv, _ = await client.get(KEY, timeout=T)
    assert kv is not None, "get() returned the cancelled put's answer"
    assert kv.value in (b"old", b"new")  # the put may be applied before or after the get
    assert (await client.grant(3, timeout=T))[1] == 3  # and not the get's answer


async def test_a_call_queued_behind_a_stuck_one_keeps_its_own_timeout(etcd, client):
    await client.put(KEY, b"v", timeout=T)
    etcd.pause()
    try:
        stuck = asyncio.create_task(client.get(KEY, timeout=2.0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.keepalive(1, timeout=0.2)
        elapsed = time.monotonic() - started
        with pytest.raises(TimeoutError):
            await stuck
    finally:
        etcd.resume()
    assert elapsed < 1.0, f"a 0.2 s call took {elapsed:.2f} s"


async def test_get_prefix_of_the_empty_prefix_is_every_key(client):
    await client.put("/a", b"1", timeout=T)
    await client.put("/b", b"2", timeout=T)
    kvs, _ = await client.get_prefix("", timeout=T)
    assert [kv.key for kv in kvs] == ["/a", "/b"]


async def test_a_connection_closed_by_the_server_is_replaced_before_writing(etcd, second_etcd):
    client = EtcdClient([etcd.url, second_etcd.url])
    try:
        await client.put(KEY, b"first", timeout=T)
        etcd.stop()
        await asyncio.sleep(0.2)  # the loop sees the close
        kv, _ = await client.get(KEY, timeout=T)  # should go to the second etcd
        assert kv is None
    finally:
        await client.close()
