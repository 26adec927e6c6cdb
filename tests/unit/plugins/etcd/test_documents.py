"""The etcd strategy reads the documents other nodes (or anyone with etcd access) wrote:
whatever a key holds, it is read as a document or as nothing, never an exception."""

from __future__ import annotations

import pytest

from tieline.plugins.etcd.client import KeyValue
from tieline.plugins.etcd.strategy import EtcdStrategy


@pytest.mark.parametrize("value", [
    b"", b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 5000, b'{"n": ' + b"9" * 5000 + b"}",
])
def test_a_key_that_holds_no_document_reads_as_empty(value):
    kv = KeyValue(key="/tieline/t/leader", value=value, create_revision=1, mod_revision=1,
                  lease=0)
    assert EtcdStrategy._read(kv) == {}


def test_a_document_reads_as_itself():
    kv = KeyValue(key="/tieline/t/leader", value=b'{"node": "a", "role": "main"}',
                  create_revision=1, mod_revision=1, lease=0)
    assert EtcdStrategy._read(kv) == {"node": "a", "role": "main"}
