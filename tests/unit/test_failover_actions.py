"""ActionRunner: a node's failover actions follow its state, in order, one at a time."""

from __future__ import annotations

import asyncio

from tieline.errors import TielineError
from tieline.failover import ActionRunner, FailoverAction, State


class Recorder(FailoverAction):
    """An action that notes its calls and can be made to fail or to be slow."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__(None, {})  # type: ignore[arg-type]
        self.calls: list[str] = []
        self.failures = 0
        self.delay = 0.0

    async def activate(self) -> None:
        await self._call("activate")

    async def deactivate(self) -> None:
        await self._call("deactivate")

    async def _call(self, what: str) -> None:
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise TielineError(f"{what} failed on purpose")
        self.calls.append(what)


async def _until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_follows_the_state_and_deactivates_when_stopped():
    action = Recorder()
    runner = ActionRunner([action], retry_s=0.01)
    task = asyncio.create_task(runner.run())
    runner.want(State.STANDBY)  # at start: clear what a crashed run left
    await _until(lambda: action.calls == ["deactivate"])
    runner.want(State.ACTIVE)
    await _until(lambda: action.calls == ["deactivate", "activate"])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert action.calls == ["deactivate", "activate", "deactivate"]


async def test_changes_during_a_slow_action_coalesce_to_the_latest():
    action = Recorder()
    action.delay = 0.05
    runner = ActionRunner([action], retry_s=0.01)
    task = asyncio.create_task(runner.run())
    runner.want(State.ACTIVE)
    await asyncio.sleep(0.01)  # activate is running
    runner.want(State.STANDBY)
    runner.want(State.ACTIVE)
    runner.want(State.STANDBY)
    await _until(lambda: runner.done is State.STANDBY)
    assert action.calls == ["activate", "deactivate"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert action.calls == ["activate", "deactivate"]  # already standby: nothing more


async def test_a_failed_call_is_logged_and_retried(caplog):
    action = Recorder()
    action.failures = 2
    runner = ActionRunner([action], retry_s=0.01)
    task = asyncio.create_task(runner.run())
    runner.want(State.ACTIVE)
    await _until(lambda: action.calls == ["activate"])
    assert caplog.text.count("failover action recorder could not activate") == 2
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
