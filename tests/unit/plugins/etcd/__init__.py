"""Unit tests of the etcd plugin (no etcd needed)."""
