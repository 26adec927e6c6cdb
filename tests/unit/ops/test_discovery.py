"""What a node puts in its mDNS TXT record, without the network (see
tests/integration/test_discovery.py for the round trips)."""

from __future__ import annotations

import pytest

from tieline.ops.discovery import NodeAdvert, advert_for, parse_interfaces
from tieline.node import build_node


def test_txt_record_holds_name_role_state_epoch_apis_and_failover():
    advert = NodeAdvert(node="studio-a", role="main", state="active", epoch=12,
                        apis=("ws://0.0.0.0:8181", "videohub://0.0.0.0:9990"),
                        failover="192.0.2.10:7100")
    assert advert.properties() == {
        "txtvers": "1", "node": "studio-a", "role": "main", "state": "active", "epoch": "12",
        "api1": "ws://0.0.0.0:8181", "api2": "videohub://0.0.0.0:9990",
        "failover": "192.0.2.10:7100",
    }
    assert advert.port == 8181
    bare = NodeAdvert(node="x", role="standalone", state="active")
    assert "failover" not in bare.properties() and bare.port == 0


def test_a_txt_entry_longer_than_255_bytes_is_refused():
    advert = NodeAdvert(node="x", role="main", state="active", apis=("ws://" + "h" * 250,))
    with pytest.raises(ValueError, match="api1=.* longer than 255 bytes"):
        advert.properties()


def test_interfaces_are_ipv4_addresses():
    assert parse_interfaces(None) is None
    assert parse_interfaces(" ") is None
    assert parse_interfaces("192.0.2.10, 127.0.0.1") == ["192.0.2.10", "127.0.0.1"]
    for bad in ("eth0", "::1", "192.0.2.10,"):
        with pytest.raises(ValueError, match="is not an IPv4 address"):
            parse_interfaces(bad)


def test_advert_for_a_node_uses_its_status_and_api_urls(settings_dir):
    node = build_node(settings_dir({"tieline.json": {
        "node": {"name": "studio-a"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"], "sources": 4,
                     "destinations": 4}],
        "apis": [{"type": "websocket", "listen": "0.0.0.0:8181"},
                 {"type": "videohub", "listen": "0.0.0.0:9990", "router": "studio"}],
    }}))
    assert advert_for(node) == NodeAdvert(
        node="studio-a", role="standalone", state="active", epoch=0,
        apis=("ws://0.0.0.0:8181", "videohub://0.0.0.0:9990"), failover=None)
