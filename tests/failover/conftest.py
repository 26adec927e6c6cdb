"""Fixtures for failover tests (real processes)."""

from __future__ import annotations

import pytest

from .cluster import Cluster


@pytest.fixture
def make_cluster(tmp_path, request):
    clusters: list[Cluster] = []

    def make(**kwargs) -> Cluster:
        cluster = Cluster(tmp_path / f"c{len(clusters)}", **kwargs)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop_all()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(cluster.logs())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
