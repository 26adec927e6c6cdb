"""The checker on small synthetic histories: for each property, histories that pass and
histories that fail with the expected counter-example. No processes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from .checker import (Limits, check, check_epochs, check_liveness, check_no_internal_errors,
                      check_no_unasked_commands, check_routes_durable, check_settings,
                      every_violation, report, summary)
from .history import (DeviceCommand, Fault, History, NodeEvent, Op, RouterInfo,
                      RouterReset, parse_command, parse_node_log)

T0 = 1_700_000_000.0
VH = RouterInfo("videohub", ["video"], 16, 16)
SW = RouterInfo("swp08", ["video", "audio"], 16, 16)


def at(seconds: float) -> float:
    return T0 + seconds


def history(strategy: str = "lease", **kwargs) -> History:
    files = {"users.json": "{}", "salvos.json": '{"salvos": []}',
             "labels.json": '{"routers": {}}'}
    h = History(strategy=strategy, roles={"a": "main", "b": "backup"},
                routers={"vh": VH, "sw": SW}, lease_s=0.6, heartbeat_s=0.05, t0=T0,
                writer="a", healed_at=at(50),
                final_settings={"a": dict(files), "b": dict(files)},
                events=[NodeEvent("a", at(0), "start"), NodeEvent("b", at(0.1), "start"),
                        NodeEvent("a", at(1), "grant", 1)])
    for key, value in kwargs.items():
        setattr(h, key, value)
    return h


def route(seq: int, dest: int, source: int, *, node: str = "a", invoke: float = 10.0,
          complete: float | None = 10.1, outcome: str = "ok", error: str | None = None,
          router: str = "vh", levels: tuple[str, ...] = ("video",)) -> Op:
    asked = tuple((router, lv, dest, source) for lv in levels)
    return Op("c1", seq, "route", node, at(invoke), None if complete is None else at(complete),
              outcome, error, epoch=1, asked=asked,
              confirmed=asked if outcome == "ok" else (),
              args={"router": router, "destination": dest, "source": source})


def sent(dest: int, source: int, t: float, *, node: str | None = "a",
         router: str = "vh", level: str = "video") -> DeviceCommand:
    return DeviceCommand(router, at(t), f"10.0.0.1:{5000 if node == 'a' else 6000}", node,
                         "route", ((router, level, dest, source),),
                         raw=f"Routes(... ({dest - 1}, {source - 1}) ...)")


# -- reading the records -----------------------------------------------------------------

def test_emulator_commands_are_read_in_api_numbers():
    vh = parse_command("vh", VH, 1.0, "p", "a",
                       "Routes(table=<RoutingTable.VIDEO_OUTPUT: 'VIDEO OUTPUT ROUTING'>, "
                       "routes=((3, 5), (4, 0)), unparsed=())")
    assert (vh.kind, vh.crosspoints) == ("route", (("vh", "video", 4, 6), ("vh", "video", 5, 1)))
    lock = parse_command("vh", VH, 1.0, "p", "a",
                         "Locks(table=<LockTable.VIDEO_OUTPUT: 'VIDEO OUTPUT LOCKS'>, "
                         "locks=((3, <LockState.OWNED: 'O'>),), unparsed=())")
    assert (lock.kind, lock.ports) == ("protect", (("vh", "video", 4),))
    sw = parse_command("sw", SW, 1.0, "p", "b",
                       "Connect(matrix=0, level=1, destination=3, source=5, extended=False)")
    assert (sw.kind, sw.crosspoints) == ("route", (("sw", "audio", 4, 6),))
    for raw, driver in (("StatusRequest(header='VIDEO OUTPUT ROUTING')", VH), ("Ping()", VH),
                        ("TallyDumpRequest(matrix=0, level=0, extended=False)", SW),
                        ("Interrogate(matrix=0, level=0, destination=1, extended=False)", SW)):
        assert parse_command("x", driver, 1.0, "p", "a", raw).kind == "read"
    assert parse_command("vh", VH, 1.0, "p", "a", "Labels(table=...)").kind == "label"
    assert parse_command("sw", SW, 1.0, "p", "a", "Maintenance(function=0)").kind == "other"


def test_node_logs_give_transitions_with_epochs():
    lines = [
        "2024-05-01 12:00:00,123 WARNING tieline.plugins.lease.strategy: this node is now "
        "active (epoch 3): no active node heard for 600 ms",
        "2024-05-01 12:00:01,000 INFO    tieline.node: serving ws://x",
        "2024-05-01 12:00:02,500 WARNING tieline.plugins.lease.strategy: the failover tick "
        "ran 2.1 s late (was this process paused?): not acting until every peer has answered "
        "a probe (epoch 3)",
        "2024-05-01 12:00:03,000 INFO    tieline.plugins.lease.strategy: revalidated: every "
        "peer answered after the pause and none is active above epoch 3: still the active "
        "node",
        "2024-05-01 12:00:04,000 WARNING tieline.plugins.lease.strategy: after the pause, b "
        "did not answer within a lease: giving epoch 3 up (a peer may have taken over); this "
        "node becomes standby",
        "2024-05-01 12:00:05,000 WARNING tieline.plugins.lease.strategy: switched back: the "
        "main is active again (epoch 5)",
        "2024-05-01 12:00:06,000 WARNING tieline.plugins.etcd.strategy: this node is now "
        "standby: handed over to 'a'",
        "2024-05-01 12:00:07,000 WARNING tieline.plugins.etcd.strategy: this node is now "
        "active (epoch 1234, the etcd leader key's revision)",
        "2024-05-01 12:00:08,000 WARNING tieline.devices: router 'sw': this node lost the "
        "right to act while it was writing to the router (was the process stalled?); what "
        "it wrote may have reached the router after another node took over.",
    ]
    events = list(parse_node_log("a", lines))
    assert [(e.kind, e.epoch) for e in events] == [
        ("grant", 3), ("fenced", 3), ("revalidated", 3), ("demote", 3), ("grant", 5),
        ("demote", None), ("grant", 1234), ("crossed", None)]
    assert events[-1].text == "sw"
    assert events[1].t - events[0].t == pytest.approx(2.377)


def test_the_proposed_structured_transition_line_is_read_too():
    stamp = "2024-05-01 12:00:00,123 INFO    tieline.failover: TRANSITION "
    lines = [stamp + json.dumps({"t": 1714557600.1234, "node": "a", "state": state,
                                 "epoch": 4, "acting": acting, "why": why})
             for state, acting, why in (("active", True, "took over"),
                                        ("active", False, "tick late"),
                                        ("standby", False, "handed over"))]
    events = list(parse_node_log("a", lines))
    assert [(e.kind, e.epoch, e.text) for e in events] == [
        ("grant", 4, "took over"), ("fenced", 4, "tick late"), ("demote", 4, "handed over")]
    assert events[0].t == 1714557600.1234


def test_a_history_survives_saving(tmp_path):
    h = history(ops=[route(1, 3, 5)], commands=[sent(3, 5, 10.05)],
                faults=[Fault("partition", "a|b", at(5), at(8), (("a", "b"), ("b", "a")))],
                resets=[RouterReset("vh", at(20))], final_routes={"vh": {"video/3": 5}})
    h.save(tmp_path / "h.json")
    again = History.load(tmp_path / "h.json")
    assert again == h
    assert check(again) == check(h)


# -- property 1 --------------------------------------------------------------------------

def test_p1_an_acknowledged_route_on_the_router_at_the_end_passes():
    h = history(ops=[route(1, 3, 5)], commands=[sent(3, 5, 10.05)],
                final_routes={"vh": {"video/3": 5}})
    assert check_routes_durable(h) is None


def test_p1_a_route_superseded_by_a_later_change_passes():
    h = history(ops=[route(1, 3, 5)],
                commands=[sent(3, 5, 10.05), sent(3, 9, 12.0, node=None)],  # the panel
                final_routes={"vh": {"video/3": 9}})
    assert check_routes_durable(h) is None
    h2 = replace(h, commands=[sent(3, 5, 10.05)], resets=[RouterReset("vh", at(11))],
                 final_routes={"vh": {"video/3": 1}})
    assert check_routes_durable(h2) is None


def test_p1_a_lost_acknowledged_route_fails():
    h = history(ops=[route(1, 3, 5)], commands=[sent(3, 5, 10.05)],
                final_routes={"vh": {"video/3": 2}})
    v = check_routes_durable(h)
    assert v is not None and v.prop == 1
    assert "c1#1" in v.summary and "ends with source 2" in v.summary


def test_p1_an_acknowledgement_without_a_command_fails():
    # node a says the router confirmed it, but the router got it from nobody in time
    h = history(ops=[route(1, 3, 5)], commands=[sent(3, 5, 8.0)],
                final_routes={"vh": {"video/3": 5}})
    v = check_routes_durable(h)
    assert v is not None and "never received that crosspoint" in v.summary
    assert "+8.000s" in v.detail  # the earlier command is shown


def test_p1_a_route_made_by_the_other_node_does_not_count():
    h = history(ops=[route(1, 3, 5)], commands=[sent(3, 5, 10.05, node="b")],
                final_routes={"vh": {"video/3": 5}})
    assert check_routes_durable(h) is not None


# -- property 2 --------------------------------------------------------------------------

def test_p2_commands_asked_for_pass():
    salvo = Op("c2", 1, "salvo", "a", at(20), at(20.2), "ok", asked=(
        ("sw", "video", 1, 2), ("sw", "audio", 1, 2)), confirmed=(("sw", "video", 1, 2),))
    h = history(ops=[route(1, 3, 5), salvo,
                     route(2, 4, 4, complete=None, outcome="unknown", invoke=30)],
                commands=[sent(3, 5, 10.05), sent(1, 2, 20.1, router="sw"),
                          sent(1, 2, 20.1, router="sw", level="audio"),
                          sent(4, 4, 33.0),  # no answer: in flight for unknown_window_s
                          sent(7, 7, 40.0, node=None)])  # the panel asks nobody
    assert check_no_unasked_commands(h) is None


def test_p2_a_remembered_route_pushed_later_fails():
    h = history(ops=[route(1, 3, 5)], commands=[sent(3, 5, 10.05), sent(3, 5, 25.0)])
    v = check_no_unasked_commands(h)
    assert v is not None and v.prop == 2
    assert "+25.000s" in v.detail and "c1#1" in v.detail


def test_p2_a_route_asked_of_the_other_node_fails():
    h = history(ops=[route(1, 3, 5, node="b")], commands=[sent(3, 5, 10.05, node="a")])
    v = check_no_unasked_commands(h)
    assert v is not None and "none, ever" in v.detail


def test_p2_a_change_no_request_can_ask_for_fails():
    h = history(commands=[DeviceCommand("vh", at(3), "p", "a", "label", raw="Labels(...)")])
    v = check_no_unasked_commands(h)
    assert v is not None and "(label)" in v.summary


# -- property 3 --------------------------------------------------------------------------

def _failover(extra_events=(), faults=(), strategy="lease") -> History:
    """a active at 1; paused at 10; b granted 2 at 11; a resumes at 12."""
    events = [NodeEvent("a", at(0), "start"), NodeEvent("b", at(0.1), "start"),
              NodeEvent("a", at(1), "grant", 1), NodeEvent("b", at(11), "grant", 2),
              *extra_events]
    return history(strategy, events=events, faults=list(faults))


def test_p3_writes_before_the_new_grant_and_by_the_new_holder_pass():
    h = _failover()
    h.commands = [sent(3, 5, 9.9), sent(3, 6, 11.5, node="b")]
    assert check_epochs(h) is None


def test_p3_a_write_at_a_superseded_epoch_fails():
    h = _failover()
    h.commands = [sent(3, 5, 11.0005)]  # within the log's millisecond: order not certain
    assert check_epochs(h) is None
    h.commands = [sent(3, 5, 9.9), sent(3, 6, 12.2)]  # a, after b's grant of 2
    v = check_epochs(h)
    assert v is not None and v.prop == 3
    assert "at epoch 1 after node b had been granted epoch 2 (+11.000s)" in v.summary


def test_p3_a_write_while_fenced_or_after_a_restart_fails():
    fenced = _failover([NodeEvent("a", at(12), "fenced", 1)])
    fenced.commands = [sent(3, 5, 12.1)]
    v = check_epochs(fenced)
    assert v is not None and "its last transition was fenced (epoch 1)" in v.summary
    restarted = _failover([NodeEvent("b", at(20), "kill"), NodeEvent("b", at(21), "start")])
    restarted.commands = [sent(3, 5, 21.5, node="b")]
    v = check_epochs(restarted)
    assert v is not None and "its last transition was start" in v.summary
    revalidated = _failover([NodeEvent("b", at(12), "fenced", 2),
                             NodeEvent("b", at(12.1), "revalidated", 2)])
    revalidated.commands = [sent(3, 5, 12.2, node="b")]
    assert check_epochs(revalidated) is None


def test_p3_a_change_logged_in_transit_after_standing_down_is_written_before():
    """The router logs a command some milliseconds after the node wrote it: one logged
    within transit_s of a demotion nothing superseded was written while the node acted;
    later, or at an epoch another node had been granted, it is a violation."""
    demoted = _failover([NodeEvent("b", at(12), "demote")])
    demoted.commands = [sent(3, 5, 12.02, node="b")]
    assert check_epochs(demoted) is None
    demoted.commands = [sent(3, 5, 12.2, node="b")]
    v = check_epochs(demoted)
    assert v is not None and "its last transition was demote" in v.summary
    superseded = _failover([NodeEvent("a", at(11.99), "demote")])  # b granted 2 at 11
    superseded.commands = [sent(3, 5, 12.0, node="a")]
    v = check_epochs(superseded)
    assert v is not None and "at epoch 1 after node b had been granted epoch 2" in v.summary


def test_p3_a_grant_logged_just_after_the_write_it_allowed_counts_as_before():
    """A node logs its grant after making it, with the time truncated to the millisecond;
    a write it made at once can reach the router's log first (long run lease seed
    1179916702: b's lock logged 2 ms after b's grant line)."""
    h = _failover()
    h.commands = [sent(3, 6, 11.0015, node="b")]  # 1.5 ms after b's grant line
    assert check_epochs(h) is None
    h.commands = [sent(3, 6, 10.99, node="b")]  # 10 ms before: b did not hold it
    v = check_epochs(h)
    assert v is not None and "its last transition was start" in v.summary


def test_p3_a_change_logged_just_after_a_kill_was_written_before():
    """The harness notes a kill just after the signal; a frame still in the proxy reaches
    the router's log a few milliseconds later (short etcd run: 3 ms). Later is a
    violation."""
    killed = _failover([NodeEvent("b", at(12), "kill")])
    killed.commands = [sent(3, 6, 12.003, node="b")]
    assert check_epochs(killed) is None
    killed.commands = [sent(3, 6, 12.3, node="b")]
    v = check_epochs(killed)
    assert v is not None and "it was not running" in v.summary


def test_transit_and_slack_grow_with_the_harness_s_own_lateness():
    """An overloaded harness delivers commands late through its proxies: the allowances
    grow by the lateness it sampled around the command, and only there."""
    demoted = _failover([NodeEvent("b", at(12), "demote")])
    demoted.commands = [sent(3, 5, 12.08, node="b")]  # 80 ms: beyond transit_s alone
    assert check_epochs(demoted) is not None
    demoted.lag = [(at(12.07), 0.06)]  # the harness woke 60 ms late just then
    assert check_epochs(demoted) is None
    demoted.lag = [(at(5.0), 0.5)]  # lateness elsewhere excuses nothing here
    assert check_epochs(demoted) is not None
    demoted.lag = [(at(12.07), 0.02)]  # the harness and the router's emulator, together
    demoted.device_lag = {"vh": [(at(12.075), 0.02)], "sw": [(at(12.075), 0.5)]}
    assert check_epochs(demoted) is None
    demoted.device_lag = {"sw": [(at(12.075), 0.5)]}  # another router's lateness: no
    assert check_epochs(demoted) is not None
    answered = history(ops=[route(1, 3, 5, invoke=10.0, complete=10.1)],
                       commands=[sent(3, 5, 10.2)], final_routes={"vh": {"video/3": 5}})
    assert check_no_unasked_commands(answered) is not None  # 100 ms after its answer
    answered.lag = [(at(10.19), 0.08)]
    assert check_no_unasked_commands(answered) is None


def test_p3_a_write_across_a_stall_is_excused_only_when_the_node_reported_it():
    """Long etcd run, seed 934044907: a passed its fence check, was stopped before its
    CONNECT left, and wrote it 2.7 s later when it resumed, b having been granted a higher
    epoch. The node's own report ("lost the right to act while it was writing") excuses
    that write and no other: another router, or later."""
    h = _failover([NodeEvent("a", at(10), "pause"), NodeEvent("a", at(12), "resume"),
                   NodeEvent("a", at(12.001), "crossed", None, "vh"),
                   NodeEvent("a", at(12.01), "demote")])
    h.commands = [sent(3, 5, 12.004)]  # a at epoch 1, b granted 2 at 11
    assert check_epochs(h) is None
    assert summary(h)["writes_across_a_stall"] == 1
    h.commands = [sent(3, 5, 12.004, router="sw")]  # the report names vh
    assert check_epochs(h) is not None
    h.commands = [sent(3, 5, 12.3)]  # long after the report
    assert check_epochs(h) is not None
    h.events = [e for e in h.events if e.kind != "crossed"]
    h.commands = [sent(3, 5, 12.004)]  # the same write, unreported
    v = check_epochs(h)
    assert v is not None and "at epoch 1 after node b had been granted epoch 2" in v.summary


def test_p3_the_documented_lease_split_is_excused_until_the_link_heals():
    cut = Fault("partition", "a|b", at(10), at(20), (("a", "b"), ("b", "a")))
    h = _failover(faults=[cut])
    h.commands = [sent(3, 5, 15.0), sent(3, 5, 20.0 + h.lease_s + 3.0)]  # main a, epoch 1
    assert check_epochs(h) is None
    late = replace(h, commands=[sent(3, 5, 20.0 + h.lease_s + 3.6)])
    v = check_epochs(late)
    assert v is not None and "granted epoch 2" in v.summary and "partition a|b" in v.detail


def test_p3_the_lease_exception_lasts_while_the_node_cannot_hear_the_other():
    # cut, healed for less than the grace, cut again, then the other stopped: never heard
    faults = [Fault("partition", "a|b", at(10), at(13), (("a", "b"), ("b", "a"))),
              Fault("partition", "a|b", at(14), at(16), (("a", "b"), ("b", "a")))]
    h = _failover([NodeEvent("b", at(17), "pause"), NodeEvent("b", at(25), "resume")],
                  faults=faults)
    h.commands = [sent(3, 5, 24.0), sent(3, 5, 25.0 + h.lease_s + 3.4)]
    assert check_epochs(h) is None
    h.commands = [sent(3, 5, 25.0 + h.lease_s + 3.6)]
    assert check_epochs(h) is not None
    # the other killed and back as a standby: the main is left at the lower epoch
    gone = _failover([NodeEvent("b", at(12), "kill"), NodeEvent("b", at(14), "start")],
                     faults=[faults[0]])
    gone.commands = [sent(3, 5, 30.0)]
    assert check_epochs(gone) is not None


def test_p3_a_link_fault_that_ended_within_the_lease_before_the_grant_excuses_the_split():
    """Long lease run, seed 806008134: the peer link delayed 1.14 s both ways until
    +28.785s; b, whose evidence of a was all stale, took over 112 ms after the delay
    ended, and a went on until it heard b (137 ms). A fault that ended more than a lease
    before the grant excuses nothing."""
    delayed = Fault("delay", "a|b", at(7), at(10.8), (("a", "b"), ("b", "a")))
    h = _failover(faults=[delayed])  # b granted 2 at 11, lease 0.6 s
    h.commands = [sent(3, 5, 11.05)]
    assert check_epochs(h) is None
    h.faults = [Fault("delay", "a|b", at(7), at(10.3), (("a", "b"), ("b", "a")))]
    v = check_epochs(h)
    assert v is not None and "at epoch 1 after node b had been granted epoch 2" in v.summary


def test_p3_the_lease_exception_needs_the_right_direction_node_and_strategy():
    # b -> a worked: a may act until it hears b's first heartbeat, not longer
    oneway = Fault("oneway", "a>b", at(10), at(20), (("a", "b"),))
    h = _failover(faults=[oneway])
    h.commands = [sent(3, 5, 11.1)]
    assert check_epochs(h) is None
    h.commands = [sent(3, 5, 15.0)]
    assert check_epochs(h) is not None
    # a cut that began long after the grant: a had heard b already
    late_cut = Fault("partition", "a|b", at(13), at(20), (("a", "b"), ("b", "a")))
    h2 = _failover(faults=[late_cut])
    h2.commands = [sent(3, 5, 15.0)]
    assert check_epochs(h2) is not None
    # etcd has no exception at all
    cut = Fault("partition", "a|b", at(10), at(20), (("a", "b"), ("b", "a")))
    h3 = _failover(faults=[cut], strategy="etcd")
    h3.commands = [sent(3, 5, 15.0)]
    assert check_epochs(h3) is not None
    # the backup as the old holder: a main that took over across a one-way cut
    roles = _failover(faults=[Fault("oneway", "b>a", at(10), at(20), (("b", "a"),))])
    roles.events = [NodeEvent("a", at(0), "start"), NodeEvent("b", at(0.1), "start"),
                    NodeEvent("b", at(1), "grant", 1), NodeEvent("a", at(11), "grant", 2)]
    roles.commands = [sent(3, 5, 11.05, node="b")]
    assert check_epochs(roles) is None  # b hears a's first heartbeat: it may not know yet
    roles.commands = [sent(3, 5, 11.5, node="b")]
    assert check_epochs(roles) is not None  # a -> b worked: b heard a and went on
    # a pause is not a partition
    pause = Fault("pause", "a", at(10), at(12))
    h4 = _failover(faults=[pause])
    h4.commands = [sent(3, 5, 12.05)]
    assert check_epochs(h4) is not None


def test_p3_settings_have_one_writer():
    label = Op("c1", 1, "label", "b", at(5), at(5.01), "ok", item="labels/vh/sources/1",
               value="CAM")
    h = history("peer_sync", ops=[label])
    v = check_epochs(h)
    assert v is not None and "only the main (a) writes settings" in v.summary
    h.ops = [replace(label, node="a")]
    h.commands = [sent(3, 5, 15.0, node="b")]  # peer_sync: b routes at will
    assert check_epochs(h) is None


# -- property 4 --------------------------------------------------------------------------

def _labels(text: str | None) -> str:
    sources = {"1": text} if text else {}
    return json.dumps({"routers": {"vh": {"sources": sources}}})


def label(seq: int, text: str, invoke: float, complete: float | None, outcome="ok",
          error=None, node="a") -> Op:
    return Op("c1", seq, "label", node, at(invoke), None if complete is None else at(complete),
              outcome, error, item="labels/vh/sources/1", value=text)


def test_p4_the_last_acknowledged_write_everywhere_passes():
    h = history(ops=[label(1, "CAM 1", 5, 5.1), label(2, "CAM 2", 6, 6.1),
                     label(3, "JIB", 7, 7.1, "error", "read_only", node="b")])
    for node in "ab":
        h.final_settings[node]["labels.json"] = _labels("CAM 2")
    assert check_settings(h) is None


def test_p4_concurrent_or_unknown_writes_may_win():
    h = history(ops=[label(1, "CAM 1", 5, 5.3), label(2, "CAM 2", 5.1, 5.2),
                     label(3, "X", 8, None, "unknown")])
    for final in ("CAM 1", "CAM 2", "X"):
        for node in "ab":
            h.final_settings[node]["labels.json"] = _labels(final)
        assert check_settings(h) is None, final


def test_p4_a_lost_write_fails():
    h = history(ops=[label(1, "CAM 1", 5, 5.1), label(2, "CAM 2", 6, 6.1)])
    for node in "ab":
        h.final_settings[node]["labels.json"] = _labels("CAM 1")
    v = check_settings(h)
    assert v is not None and v.prop == 4 and "labels/vh/sources/1 is lost" in v.summary
    assert "c1#2" in v.detail


def test_p4_diverging_files_fail():
    h = history(ops=[label(1, "CAM 1", 5, 5.1)])
    h.final_settings["a"]["labels.json"] = _labels("CAM 1")
    h.final_settings["b"]["labels.json"] = json.dumps(json.loads(_labels("CAM 1")),
                                                      indent=2) + "\n"
    assert check_settings(h) is None  # the same settings, written otherwise
    h.final_settings["b"]["labels.json"] = _labels(None)
    v = check_settings(h)
    assert v is not None and "node b's labels.json differs" in v.summary
    h.replicated = False  # etcd: nothing is replicated, only the writer counts
    assert check_settings(h) is None


# -- property 5 --------------------------------------------------------------------------

def test_p5_a_route_soon_after_the_heal_passes():
    h = history(ops=[route(1, 3, 5, invoke=50.1, complete=50.2)])
    assert check_liveness(h) is None


def test_p5_no_route_within_twice_the_lease_fails():
    h = history(ops=[route(1, 3, 5, invoke=50.1, complete=None, outcome="error",
                           error="standby"),
                     route(2, 3, 5, invoke=50.5, complete=51.3)])  # 1.3 s > 2 x 0.6
    v = check_liveness(h)
    assert v is not None and v.prop == 5
    assert "c1#2" in v.detail and "standby" in v.detail
    assert check_liveness(replace(h, healed_at=None)) is not None


# -- property 6 --------------------------------------------------------------------------

def test_p6_a_fault_answered_with_its_own_code_passes():
    h = history(ops=[route(1, 3, 5, outcome="error", error="standby"),
                     route(2, 3, 5, outcome="error", error="offline"),
                     Op("c1", 3, "label", "a", at(11), at(11.1), "error", "not_saved",
                        epoch=1, item="labels/vh/sources/3", value="CAM 3")])
    assert check_no_internal_errors(h) is None


def test_p6_a_request_answered_as_a_bug_fails():
    h = history(ops=[route(1, 3, 5),
                     Op("c1", 2, "label", "a", at(11), at(11.1), "error", "error", epoch=1,
                        item="labels/vh/sources/3", value="CAM 3",
                        message="internal error: OSError: [Errno 28] No space left")],
                faults=[Fault("disk_full", "a", at(10.5), at(13), ())])
    v = check_no_internal_errors(h)
    assert v is not None and v.prop == 6
    assert "c1#2" in v.summary and "No space left" in v.detail and "disk_full a" in v.detail


# -- all together ------------------------------------------------------------------------

def test_a_clean_history_passes_and_reports():
    h = history(ops=[route(1, 3, 5), route(2, 3, 5, invoke=50.1, complete=50.15)],
                commands=[sent(3, 5, 10.05), sent(3, 5, 50.12)],
                final_routes={"vh": {"video/3": 5}}, seed=7)
    assert check(h, Limits()) == []
    assert report(h, []).endswith("PASS")
    counts = summary(h)
    assert counts["operations"] == {"route ok": 2} and counts["commands"] == {"route": 2}


def test_a_failing_history_reports_its_seed_and_schedule():
    h = history(ops=[route(1, 3, 5)], commands=[sent(3, 5, 10.05)],
                final_routes={"vh": {"video/3": 2}}, seed=42,
                schedule=["+5.0s kill a", "+6.0s restart a"])
    text = report(h, check(h))
    assert "seed 42: FAIL" in text and "+5.0s kill a" in text and "property 1" in text


def test_every_counter_example_can_be_counted():
    h = _failover()
    h.commands = [sent(3, 5, 12.2), sent(3, 6, 12.3), sent(4, 4, 12.4, node="b")]
    late = [v for v in every_violation(h) if v.prop == 3]
    assert len(late) == 2  # both of a's, none of b's
    assert check_epochs(h) == late[0]
