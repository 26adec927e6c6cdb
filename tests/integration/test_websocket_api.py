"""The WebSocket API against a real node, real sockets, the simulator router."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import socket
import ssl
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tieline.auth import hash_token
from tieline.errors import SettingsError
from tieline.model import PortKind

from .helpers import RawClient, api_url, running_node

TOKENS = {"watcher": "watch-token", "operator": "route-token", "operator2": "route-token-2",
          "admin": "admin-token"}
LEVELS = {"watcher": 1, "operator": 2, "operator2": 2, "admin": 3}


def api_settings(settings_dir, **api_options) -> Path:
    return settings_dir({
        "tieline.json": {
            "node": {"name": "api-test"},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                         "sources": 32, "destinations": 32, "label_store": "settings"}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0", **api_options}],
            "auth": {"users_file": "users.json"},
        },
        "users.json": {"users": [
            {"name": n, "level": LEVELS[n], "token_sha256": hash_token(t)}
            for n, t in TOKENS.items()
        ]},
        "salvos.json": {"salvos": [{"name": "news", "router": "studio", "crosspoints": [
            {"destination": 1, "source": 9}, {"destination": 2, "source": 10},
            {"destination": 3, "source": 11, "levels": ["video"]}]}]},
    })


@pytest.fixture
async def node(settings_dir):
    async with running_node(api_settings(settings_dir)) as node:
        yield node


async def client(node, user: str | None = "operator", **kwargs) -> RawClient:
    return await RawClient.open(api_url(node), TOKENS[user] if user else None, **kwargs)


async def test_hello_greeting_names_node_role_state(node):
    c = await client(node, auth=False)
    assert c.hello["protocol"] == 1
    assert c.hello["node"] == {"node": "api-test", "role": "standalone", "state": "active",
                               "status": "Standalone is active", "epoch": 0, "active": None}
    assert c.hello["heartbeat_timeout_ms"] == 1500
    response = await c.request("hello", protocol=1, token=TOKENS["admin"])
    assert response["result"]["user"] == {"name": "admin", "level": 3}
    await c.close()


async def test_unauthenticated_client_can_only_hello(node):
    c = await client(node, None, auth=False)
    for mtype, fields in [("ping", {}), ("snapshot", {}), ("subscribe", {}),
                          ("route", {"router": "studio", "destination": 1, "source": 2})]:
        response = await c.request(mtype, **fields)
        assert response["error"]["code"] == "unauthenticated", response
    bad = await c.request("hello", protocol=1, token="wrong")
    assert bad["error"] == {"code": "unauthenticated", "field": "token",
                            "message": "unknown token; ask an administrator for a valid one"}
    anonymous = await c.request("hello", protocol=1)  # loopback, but anonymous level is 0
    assert anonymous["error"]["code"] == "unauthenticated"
    good = await c.request("hello", protocol=1, token=TOKENS["watcher"])
    assert good["ok"]
    assert (await c.request("ping"))["ok"]
    await c.close()


async def test_level_1_user_cannot_route(node):
    c = await client(node, "watcher")
    response = await c.request("route", router="studio", destination=5, source=3)
    assert response["error"]["code"] == "forbidden"
    assert "permission level 2" in response["error"]["message"]
    assert node.routing.routers["studio"].state.source(0, 4) == 4  # unchanged
    await c.close()


async def test_route_acknowledged_after_tally_and_seen_by_second_client(node):
    watcher = await client(node, "watcher")
    snapshot = (await watcher.request("subscribe"))["result"]
    assert snapshot["routers"][0]["crosspoints"]["video"][4] == 5  # simulator starts d <- d
    c = await client(node)
    response = await c.request("route", router="studio", destination=5, source=3)
    assert response["ok"], response
    assert response["result"]["crosspoints"] == [
        {"level": "video", "destination": 5, "source": 3},
        {"level": "audio", "destination": 5, "source": 3}]
    state = node.routing.routers["studio"].state
    assert (state.source(0, 4), state.source(1, 4)) == (2, 2)
    event = await watcher.next_event()
    assert event["event"] == "crosspoints"
    assert event["crosspoints"] == response["result"]["crosspoints"]
    # one level only
    response = await c.request("route", router="studio", destination=5, source=7,
                               levels=["audio"])
    assert response["result"]["crosspoints"] == [{"level": "audio", "destination": 5, "source": 7}]
    await c.close()
    await watcher.close()


@pytest.mark.parametrize("raw, code, field, words", [
    ("{not json", "invalid", None, "not valid JSON"),
    ("[1, 2]", "invalid", None, "expected a JSON object"),
    ('{"id": 4}', "invalid", "type", "missing or non-string 'type'"),
    ('{"type": "teleport", "id": 5}', "invalid", "type", "unknown message type 'teleport'"),
    ('{"type": "route", "id": 6, "router": "studio", "source": 3}', "invalid", "destination",
     "missing required field 'destination'"),
    ('{"type": "route", "id": 7, "router": "studio", "destination": 1, "source": "3"}',
     "invalid", "source", "must be of type integer"),
    ('{"type": "route", "id": 8, "router": "studio", "destination": 0, "source": 3}',
     "invalid", "destination", "must be ≥ 1"),
    ('{"type": "route", "id": 9, "router": "studio", "destination": 1, "source": 3, "x": 1}',
     "invalid", "x", "unknown field 'x'"),
    ('{"type": "route", "id": 10, "router": "studio", "destination": 33, "source": 3}',
     "out_of_range", "destination", "destination 33 out of range (1–32)"),
    ('{"type": "route", "id": 11, "router": "nope", "destination": 1, "source": 3}',
     "not_found", "router", "no router 'nope'"),
    ('{"type": "route", "id": 12, "router": "studio", "destination": 1, "source": 3, '
     '"levels": ["video 2"]}', "not_found", "levels.0", "no level 'video 2'"),
    ('{"type": "salvo", "id": 13, "name": "sports"}', "not_found", "name", "no salvo 'sports'"),
])
async def test_bad_requests_get_errors_and_the_connection_stays_open(node, raw, code, field, words):
    c = await client(node)
    await c.send_raw(raw)
    message = await c.recv()
    while message["type"] != "response":
        message = await c.recv()
    assert not message["ok"]
    assert message["error"]["code"] == code, message
    assert message["error"].get("field") == field, message
    assert words in message["error"]["message"], message
    assert (await c.request("ping"))["ok"]  # still open
    await c.close()


async def test_binary_frame_is_an_error(node):
    c = await client(node)
    await c.send_raw(b"\x00\x01")
    message = await c.recv()
    assert message["error"]["code"] == "invalid" and "binary" in message["error"]["message"]
    await c.close()


async def test_a_text_frame_that_is_not_utf8_closes_1007(node):
    c = await client(node)
    await c.ws.send(b'{"type": "ping", "id": "\xff"}', text=True)
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await c.recv()
    assert info.value.rcvd.code == 1007


async def test_oversized_message_closes_1009_and_others_stay_up(settings_dir):
    async with running_node(api_settings(settings_dir, max_message_bytes=4096)) as node:
        other = await client(node)
        big = await client(node, max_size=None)
        await big.send_raw(json.dumps({"type": "ping", "pad": "x" * 10000}))
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await big.recv()
        assert info.value.rcvd.code == 1009
        response = await other.request("route", router="studio", destination=2, source=8)
        assert response["ok"]
        await other.close()


async def test_salvo_reports_refused_crosspoints(node):
    owner = await client(node, "operator2")
    assert (await owner.request("protect", router="studio", destination=2, levels=["video"]))["ok"]
    c = await client(node)
    response = await c.request("salvo", name="news")
    result = response["result"]
    assert sorted((x["destination"], x["level"]) for x in result["taken"]) == [
        (1, "audio"), (1, "video"), (2, "audio"), (3, "video")]
    assert result["refused"] == [{
        "level": "video", "destination": 2, "source": 10, "code": "protected",
        "reason": "router 'studio': destination 2 (Output 2) on level video is protected by operator2"}]
    state = node.routing.routers["studio"].state
    assert state.source(0, 1) == 1 and state.source(1, 1) == 9
    await c.close()
    await owner.close()


async def test_protect_lock_and_release(node):
    alice, bob, admin = await client(node), await client(node, "operator2"), await client(node, "admin")
    assert (await alice.request("protect", router="studio", destination=4))["ok"]
    # the owner may route through a protect, others may not
    assert (await alice.request("route", router="studio", destination=4, source=1))["ok"]
    refused = await bob.request("route", router="studio", destination=4, source=2)
    assert refused["error"]["code"] == "protected"
    assert "protected by operator" in refused["error"]["message"]
    # someone else's protect: release refused, force needs level 3
    assert (await bob.request("release", router="studio", destination=4))["error"]["code"] == "protected"
    forced = await bob.request("release", router="studio", destination=4, force=True)
    assert forced["error"]["code"] == "forbidden"
    assert (await admin.request("release", router="studio", destination=4, force=True))["ok"]
    assert (await bob.request("route", router="studio", destination=4, source=2))["ok"]
    # a lock stops its owner too
    assert (await alice.request("lock", router="studio", destination=6))["ok"]
    locked = await alice.request("route", router="studio", destination=6, source=1)
    assert locked["error"]["code"] == "protected" and "locked by operator" in locked["error"]["message"]
    assert (await alice.request("release", router="studio", destination=6))["ok"]
    assert (await alice.request("route", router="studio", destination=6, source=1))["ok"]
    for c in (alice, bob, admin):
        await c.close()


async def test_label_kept_in_settings_is_written_atomically(node):
    watcher = await client(node, "watcher")
    await watcher.request("subscribe")
    operator = await client(node)
    refused = await operator.request("label", router="studio", kind="source", index=3, text="CAM 3")
    assert refused["error"]["code"] == "forbidden"
    admin = await client(node, "admin")
    assert (await admin.request("label", router="studio", kind="source", index=3, text="CAM 3"))["ok"]
    event = await watcher.next_event()
    assert event == {"type": "event", "event": "labels", "router": "studio", "kind": "source",
                     "labels": [{"index": 3, "text": "CAM 3"}]}
    folder = node.settings.folder
    assert json.loads((folder / "labels.json").read_text()) == {
        "routers": {"studio": {"sources": {"3": "CAM 3"}, "destinations": {}}}}
    assert (await admin.request("label", router="studio", kind="source", index=3, text="CAM C"))["ok"]
    assert json.loads((folder / "labels.json.prev").read_text())["routers"]["studio"]["sources"] == {
        "3": "CAM 3"}
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    for c in (watcher, operator, admin):
        await c.close()


async def test_heartbeats_arrive_within_the_timeout(settings_dir):
    async with running_node(api_settings(settings_dir, heartbeat_timeout_ms=600)) as node:
        c = await client(node)
        assert c.hello["heartbeat_ms"] == 200
        seqs = []
        while len(seqs) < 3:
            message = await c.recv(timeout=0.6)
            if message["type"] == "heartbeat":
                seqs.append(message["seq"])
        assert seqs == sorted(seqs)
        await c.close()


def _slow_settings(settings_dir) -> Path:
    """A 1,024-output router, two salvos setting every output, a 16-event queue."""
    return settings_dir({
        "tieline.json": {
            "node": {"name": "slow-test"},
            "routers": [{"id": "big", "driver": "simulator", "levels": ["video"],
                         "sources": 1024, "destinations": 1024}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0", "subscriber_queue": 16}],
            "auth": {"loopback_anonymous_level": 2},
        },
        "salvos.json": {"salvos": [
            {"name": name, "router": "big",
             "crosspoints": [{"destination": d, "source": src} for d in range(1, 1025)]}
            for name, src in (("one", 1), ("two", 2))]},
    })


async def test_subscriber_that_never_reads_does_not_delay_others(settings_dir):
    """A raw socket that upgrades, subscribes and then never reads again.

    Two 1,024-crosspoint salvos taken in turn produce ~50 kB of events each. The stuck
    client's socket buffers are made small on both ends (as on a congested path), so the
    server's writes to it block, its queue fills and it is dropped; the other subscriber
    gets every change meanwhile.
    """
    folder = _slow_settings(settings_dir)
    async with running_node(folder) as node:
        reader, writer, stuck = await _stuck_subscriber(node)
        # from here on the stuck client never reads
        fast = await RawClient.open(api_url(node))
        await fast.request("subscribe", snapshot=False)
        rounds = 30
        for i in range(rounds):
            response = await fast.request("salvo", name=("one", "two")[i % 2])
            assert len(response["result"]["taken"]) == 1024
        expected = rounds * 1024 - 1  # the simulator starts with destination 1 <- source 1
        received = 0
        while received < expected:
            event = await fast.next_event(timeout=10)
            received += len(event["crosspoints"])
        assert received == expected  # every change, none lost or repeated
        assert stuck.dropped  # the stuck subscriber was dropped ...
        async with asyncio.timeout(5):  # ... and its connection closed
            while stuck in node.apis[0].connections:
                await asyncio.sleep(0.01)
        writer.close()
        await fast.close()


async def test_a_dropped_slow_subscriber_is_cut_at_once_without_a_close_handshake(settings_dir):
    """When a subscriber's queue overflows, its TCP connection is cut on the spot: nothing
    it was sent stays queued in the server (no close frame waiting to get out behind
    megabytes of events), and the client sees the stream end without a close frame."""
    folder = _slow_settings(settings_dir)
    async with running_node(folder) as node:
        api = node.apis[0]
        reader, writer, stuck = await _stuck_subscriber(node)
        fast = await RawClient.open(api_url(node))
        watched = []

        async def watch() -> None:  # note the server's side the moment the drop happens
            while not stuck.dropped:
                await asyncio.sleep(0.005)
            watched.append((stuck.ws.transport.is_closing(),
                            stuck.ws.transport.get_write_buffer_size(), len(stuck.backlog)))

        watcher = asyncio.create_task(watch())
        for i in range(40):
            await fast.request("salvo", name=("one", "two")[i % 2])
            if watcher.done():
                break
        await asyncio.wait_for(watcher, 5)
        # cut at once: the transport is closing and holds nothing, the backlog is gone
        assert watched == [(True, 0, 0)]
        async with asyncio.timeout(5):
            while stuck in api.connections:
                await asyncio.sleep(0.01)
        assert stuck not in api.subscribers
        # the client: the bytes already in flight, then the end; never a close frame
        received = bytearray()
        async with asyncio.timeout(5):
            try:
                while chunk := await reader.read(65536):
                    received += chunk
            except ConnectionResetError:
                pass
        assert 0x8 not in _opcodes(bytes(received))
        writer.close()
        await fast.close()


async def _stuck_subscriber(node):
    """A raw socket that upgrades, says hello, subscribes, then never reads again; its
    socket buffers are small on both ends (as on a congested path)."""
    port = int(api_url(node).rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    for payload in (json.dumps({"type": "hello", "id": 1, "protocol": 1}),
                    json.dumps({"type": "subscribe", "id": 2, "snapshot": False})):
        writer.write(_masked_frame(payload.encode()))
    await writer.drain()
    api = node.apis[0]
    async with asyncio.timeout(5):
        while not api.subscribers:
            await asyncio.sleep(0.01)
    (stuck,) = api.connections
    stuck.ws.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return reader, writer, stuck


def _masked_frame(data: bytes) -> bytes:
    assert len(data) < 126
    mask = b"\x01\x02\x03\x04"
    return (bytes([0x81, 0x80 | len(data)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def _opcodes(stream: bytes) -> list[int]:
    """The opcodes of the complete server frames (unmasked) at the start of ``stream``."""
    opcodes, pos = [], 0
    while pos + 2 <= len(stream):
        length, head = stream[pos + 1] & 0x7F, 2
        if length == 126:
            if pos + 4 > len(stream):
                break
            length, head = int.from_bytes(stream[pos + 2:pos + 4], "big"), 4
        elif length == 127:
            if pos + 10 > len(stream):
                break
            length, head = int.from_bytes(stream[pos + 2:pos + 10], "big"), 10
        if pos + head + length > len(stream):
            break
        opcodes.append(stream[pos] & 0x0F)
        pos += head + length
    return opcodes


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls(settings_dir, tmp_path):
    folder = api_settings(settings_dir, tls={"certificate": "cert.pem", "key": "key.pem"})
    cert, _ = _self_signed(folder)
    async with running_node(folder) as node:
        url = api_url(node)
        assert url.startswith("wss://")
        context = ssl.create_default_context(cafile=str(cert))
        c = await RawClient.open(url, TOKENS["operator"], ssl=context)
        assert (await c.request("route", router="studio", destination=1, source=2))["ok"]
        await c.close()
        with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate
            await RawClient.open(url, TOKENS["operator"], ssl=ssl.create_default_context())


async def test_resubscribe_gets_each_event_once(node):
    watcher = await client(node, "watcher")
    await watcher.request("subscribe", snapshot=False)
    await watcher.request("unsubscribe")
    await watcher.request("subscribe", snapshot=False)
    await watcher.request("subscribe", snapshot=False)  # a second subscribe changes nothing
    operator = await client(node)
    for source in (3, 4):
        assert (await operator.request("route", router="studio", destination=9,
                                       source=source, levels=["video"]))["ok"]
    first, second = await watcher.next_event(), await watcher.next_event()
    assert [first["crosspoints"][0]["source"], second["crosspoints"][0]["source"]] == [3, 4]
    assert (await watcher.request("ping"))["ok"]
    assert watcher.events == []  # nothing repeated
    await watcher.close()
    await operator.close()


# -- malformed input: an `invalid` response naming the field, and the connection stays -------

HUGE = "9" * 5000  # beyond Python's int-parsing limit (4300 digits)


def _errors_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("raw, field, words", [
    # numbers that are not numbers tieline can use
    ('{"type": "ping", "id": %s}' % HUGE, "id", "5000 digits"),
    ('{"type": "route", "id": 1, "router": "studio", "destination": %s, "source": 1}' % HUGE,
     "destination", "5000 digits"),
    ('{"type": "route", "id": 2, "router": "studio", "destination": -%s, "source": 1}' % HUGE,
     "destination", "5000 digits"),
    ('{"type": "route", "id": 3, "router": "studio", "destination": NaN, "source": 1}',
     "destination", "NaN is not a JSON number"),
    ('{"type": "route", "id": 4, "router": "studio", "destination": 1, "source": -Infinity}',
     "source", "-Infinity is not a JSON number"),
    ('{"type": "route", "id": 5, "router": "studio", "destination": 1e999, "source": 1}',
     "destination", "out of range"),
    # whole-number floats are not integers
    ('{"type": "route", "id": 6, "router": "studio", "destination": 3.0, "source": 1}',
     "destination", "must be of type integer, got 3.0"),
    ('{"type": "route", "id": 7, "router": "studio", "destination": 3, "source": 2.0}',
     "source", "must be of type integer, got 2.0"),
    ('{"type": "label", "id": 8, "router": "studio", "kind": "source", "index": 1.0, '
     '"text": "CAM"}', "index", "must be of type integer"),
    ('{"type": "hello", "id": 9, "protocol": 1.0}', "protocol", "must be of type integer"),
    ('{"type": "ping", "id": 10.0}', "id", "must be of type integer or string"),
    # text that is not Unicode (a lone surrogate cannot be written as UTF-8)
    ('{"type": "label", "id": 11, "router": "studio", "kind": "source", "index": 1, '
     '"text": "CAM \\ud800"}', "text", "lone surrogate"),
    ('{"type": "route", "id": 12, "router": "\\udfff", "destination": 1, "source": 1}',
     "router", "lone surrogate"),
    ('{"type": "route", "id": 13, "router": "studio", "destination": 1, "source": 1, '
     '"levels": ["video", "\\ud83d"]}', "levels.1", "lone surrogate"),
    ('{"type": "ping", "id": 14, "\\ud800": 1}', "\\ud800", "lone surrogate"),
    # a key given twice: which one counts would be a guess
    ('{"type": "route", "id": 15, "router": "studio", "destination": 1, "source": 1, '
     '"destination": 2}', "destination", "more than once"),
])
async def test_malformed_values_are_invalid_naming_the_field(node, caplog, raw, field, words):
    before_hello = await client(node, None, auth=False)  # before hello as after it
    operator = await client(node, "admin")
    for c in (before_hello, operator):
        await c.send_raw(raw)
        message = await c.recv()
        assert message["type"] == "response" and not message["ok"], message
        assert message["error"]["code"] == "invalid", message
        assert message["error"].get("field") == field, message
        assert words in message["error"]["message"], message
        if field == "id":
            assert message["id"] is None
    assert (await before_hello.request("hello", protocol=1, token=TOKENS["admin"]))["ok"]
    for c in (before_hello, operator):
        assert (await c.request("ping"))["ok"]  # the connection stays
        await c.close()
    state = node.routing.routers["studio"].state
    assert [state.source(0, d) for d in range(3)] == [0, 1, 2]  # nothing was routed
    assert state.label(PortKind.SOURCE, 0) == "Input 1"  # nor labelled
    assert not (node.settings.folder / "labels.json").exists()
    assert _errors_logged(caplog) == []  # and nothing was logged as a failure


@pytest.mark.parametrize("request_type", ["route", "lock", "protect", "release"])
async def test_unknown_level_names_its_place_in_levels(node, request_type):
    c = await client(node)
    fields = {"router": "studio", "destination": 5, "levels": ["video", "nope"]}
    if request_type == "route":
        fields["source"] = 3
    response = await c.request(request_type, **fields)
    assert response["error"]["code"] == "not_found"
    assert response["error"]["field"] == "levels.1"
    assert "no level 'nope'" in response["error"]["message"]
    await c.close()


# -- the in-flight limit counts only requests waiting for a router ---------------------------

@pytest.mark.parametrize("user, request_type, fields, outcome", [
    ("operator", "ping", {}, "ok"),
    ("watcher", "route", {"router": "studio", "destination": 1, "source": 2}, "forbidden"),
    ("operator", "route", {"router": "studio", "destination": 99, "source": 2},
     "out_of_range"),
    ("operator", "snapshot", {"routers": ["nope"]}, "not_found"),
    ("operator", "status", {}, "ok"),
])
async def test_requests_that_wait_for_no_router_are_never_refused_as_in_flight(
        node, user, request_type, fields, outcome):
    c = await client(node, user)
    count = 2000
    for i in range(count):
        await c.ws.send(json.dumps({"type": request_type, "id": f"r{i}", **fields}))
    outcomes = collections.Counter()
    for i in range(count):
        response = await c.response(f"r{i}", timeout=20)
        outcomes["ok" if response["ok"] else response["error"]["code"]] += 1
    assert outcomes == {outcome: count}
    await c.close()


async def test_the_in_flight_limit_counts_requests_waiting_for_the_router(settings_dir):
    """256 routes waiting for a slow router fill the connection's limit; the 257th is
    refused, while requests that wait for no router are still answered at once."""
    folder = settings_dir({
        "tieline.json": {
            "node": {"name": "busy"},
            "routers": [{"id": "slow", "driver": "simulator", "levels": ["video"],
                         "sources": 512, "destinations": 512, "switch_delay_ms": 1000}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"loopback_anonymous_level": 2},
        },
    })
    async with running_node(folder) as node:
        c = await RawClient.open(api_url(node))
        for d in range(1, 301):
            await c.ws.send(json.dumps({"type": "route", "id": d, "router": "slow",
                                        "destination": d, "source": 1 + d % 7}))
        await c.ws.send(json.dumps({"type": "ping", "id": "ping"}))
        await c.ws.send(json.dumps({"type": "snapshot", "id": "far", "routers": ["fast"]}))
        seen = {}
        async with asyncio.timeout(10):
            while len(seen) < 302:
                message = await c.recv()
                if message["type"] == "response":
                    seen[message["id"]] = message
        order = list(seen)
        # answered at once, before any route the router had to make
        assert seen["ping"]["ok"] and order.index("ping") < 50
        assert seen["far"]["error"]["code"] == "not_found" and order.index("far") < 50
        refused = [d for d in range(1, 301) if not seen[d]["ok"]]
        assert refused == list(range(257, 301))
        assert all("too many requests in flight" in seen[d]["error"]["message"]
                   for d in refused)
        assert all(seen[d]["ok"] for d in range(1, 257))
        await c.close()


# -- browser pages: the Origin header ---------------------------------------------------------

async def test_a_foreign_browser_origin_is_refused_and_logged(settings_dir, caplog):
    folder = settings_dir({
        "tieline.json": {
            "node": {"name": "origin-test"},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                         "sources": 8, "destinations": 8}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"loopback_anonymous_level": 3},
        },
    })
    caplog.set_level(logging.DEBUG, logger="tieline")
    async with running_node(folder) as node:
        for _ in range(3):
            with pytest.raises(InvalidStatus) as info:
                await RawClient.open(api_url(node), origin="http://evil.example")
            assert info.value.response.status_code == 403
        assert node.apis[0].connections == set()
        warnings = [r.getMessage() for r in caplog.records
                    if r.name.startswith("tieline.") and r.levelno == logging.WARNING
                    and "evil.example" in r.getMessage()]
        assert len(warnings) == 1, warnings  # once; the repeats go to debug
        assert "'http://evil.example'" in warnings[0] and "allowed_origins" in warnings[0]
        # a client that sends no Origin (not a browser) is unaffected
        c = await RawClient.open(api_url(node))
        assert (await c.request("route", router="studio", destination=1, source=2))["ok"]
        await c.close()


async def test_a_listed_origin_is_accepted(settings_dir):
    folder = settings_dir({
        "tieline.json": {
            "node": {"name": "origin-test"},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                         "sources": 8, "destinations": 8}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0",
                      "allowed_origins": ["https://Panel.example:8443"]}],
            "auth": {"users_file": "users.json", "loopback_anonymous_level": 2},
        },
        "users.json": {"users": [{"name": "operator", "level": 2,
                                  "token_sha256": hash_token(TOKENS["operator"])}]},
    })
    async with running_node(folder) as node:
        c = await RawClient.open(api_url(node), TOKENS["operator"],
                                 origin="https://panel.example:8443")
        assert (await c.request("route", router="studio", destination=1, source=2))["ok"]
        await c.close()
        # accepted, but a page of that site gets no anonymous loopback rights (origins.py)
        c = await RawClient.open(api_url(node), origin="https://panel.example:8443",
                                 auth=False)
        assert (await c.request("hello", protocol=1))["error"]["code"] == "unauthenticated"
        await c.close()
        for origin in ("http://panel.example:8443", "https://panel.example",
                       "https://panel.example:8443.evil.example", "null"):
            with pytest.raises(InvalidStatus) as info:
                await RawClient.open(api_url(node), origin=origin)
            assert info.value.response.status_code == 403, origin


@pytest.mark.parametrize("entry", ["panel.example", "https://panel.example/", "*", "null",
                                   "https://panel.example/app"])
async def test_allowed_origins_must_be_origins(settings_dir, entry):
    folder = api_settings(settings_dir, allowed_origins=[entry])
    with pytest.raises(SettingsError) as info:
        async with running_node(folder):
            pass
    assert "allowed_origins" in str(info.value)


# -- logs --------------------------------------------------------------------------------------

async def test_a_short_call_logs_at_debug_and_a_subscriber_once_at_info(node, caplog):
    """A CLI call (connect, hello, status, close) leaves no INFO line; a subscriber (a
    panel) is logged when it subscribes and when it goes, once each."""
    from tieline.client import Client

    caplog.set_level(logging.DEBUG, logger="tieline")
    api = node.apis[0]

    def lines(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name.startswith("tieline.plugins.websocket_api") and r.levelno == level]

    async def closed() -> None:
        async with asyncio.timeout(5):
            while api.connections:
                await asyncio.sleep(0.01)

    async with Client(api_url(node), token=TOKENS["watcher"], client_name="tieline-cli") as c:
        await c.status()
    await closed()
    assert lines(logging.INFO) == []
    assert any("tieline-cli" in line and "watcher" in line for line in lines(logging.DEBUG))

    caplog.clear()
    async with Client(api_url(node), token=TOKENS["watcher"], client_name="panel") as c:
        await c.subscribe()
        await c.status()
    await closed()
    info = lines(logging.INFO)
    assert len(info) == 2, info
    assert "subscribed" in info[0] and "panel" in info[0] and "watcher" in info[0]
    assert "panel" in info[1] and "gone" in info[1]
