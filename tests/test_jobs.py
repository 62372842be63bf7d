"""Background jobs claimed through the database (node/process/jobs.py), on the suite's backend: one
claimer per job however many instances ask at once, stale jobs taken over, preloads waiting for
their study's retrieval, and jobs handed back at an orderly stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from node.config import JobsSection, config_from_dict
from node.process.jobs import ClaimedJob, JobBoard, JobRunner
from node.process.runtime import open_services
from node.services import NodeServices
from tests.clock import MovableClock
from tests.rest_support import config_dict

FAST = JobsSection(heartbeat_seconds=0.2, stale_seconds=1.0, poll_seconds=0.1, max_attempts=3)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[NodeServices]:
    config = config_from_dict(config_dict(), base_dir=tmp_path)
    async with open_services(config) as opened:
        yield opened


def boards(services: NodeServices, count: int, settings: JobsSection = FAST,
           clock: MovableClock | None = None) -> list[JobBoard]:
    """Boards as `count` instances on the same database would have them (on one clock)."""
    return [JobBoard(services.engine, settings, f"instance-{i}", clock or MovableClock())
            for i in range(count)]


async def test_a_job_is_queued_once_however_often_it_is_asked_for(
        services: NodeServices) -> None:
    board = boards(services, 1)[0]
    asked = await asyncio.gather(*(board.enqueue("retrieve", "1.2.3", {"n": i})
                                   for i in range(10)))
    assert sum(queued for _, queued in asked) == 1
    assert await board.active("retrieve") == {"1.2.3": "queued"}


async def test_each_job_is_claimed_by_exactly_one_of_many_instances(
        services: NodeServices) -> None:
    many = boards(services, 4)
    for i in range(20):
        await many[0].enqueue("retrieve", f"1.2.{i}", {})

    async def claim_all(board: JobBoard) -> list[str]:
        got = []
        while (job := await board.claim("retrieve")) is not None:
            got.append(job.key)
        return got

    claimed = await asyncio.gather(*(claim_all(b) for b in many))
    keys = [key for got in claimed for key in got]
    assert sorted(keys) == sorted(f"1.2.{i}" for i in range(20))
    assert await many[0].active("retrieve") == {f"1.2.{i}": "running" for i in range(20)}


async def test_a_job_whose_instance_went_silent_is_taken_over(services: NodeServices) -> None:
    clock = MovableClock()
    dead, alive = boards(services, 2, clock=clock)
    await dead.enqueue("retrieve", "1.2.9", {})
    first = await dead.claim("retrieve")
    assert first is not None and first.attempts == 1
    assert await alive.claim("retrieve") is None
    clock.advance(FAST.stale_seconds + 0.2)
    second = await alive.claim("retrieve")
    assert second is not None and second.id == first.id and second.attempts == 2
    # The dead instance's late outcome is not recorded over the new claimer's.
    assert not await dead.finish(first.id, "done", "late")
    assert await alive.finish(second.id, "done", "available")
    assert await alive.active("retrieve") == {}


async def test_a_job_that_kills_every_instance_is_given_up(services: NodeServices) -> None:
    settings = replace(FAST, stale_seconds=0.2, max_attempts=2)
    clock = MovableClock()
    board = boards(services, 1, settings, clock)[0]
    await board.enqueue("retrieve", "1.2.10", {})
    assert await board.claim("retrieve") is not None
    clock.advance(0.3)
    assert await board.claim("retrieve") is not None
    clock.advance(0.3)
    assert await board.claim("retrieve") is None
    status, queued = await board.enqueue("retrieve", "1.2.10", {},
                                         keep_done=lambda s: s.state == "failed")
    assert (status.state, queued) == ("failed", False)
    assert "each time" in status.outcome


async def test_a_preload_waits_for_its_studys_retrieval(services: NodeServices) -> None:
    board = boards(services, 1)[0]
    await board.enqueue("retrieve", "1.2.11", {})
    await board.enqueue("preload", "1.2.11", {})
    await board.enqueue("preload", "1.2.12", {})
    job = await board.claim("preload", blocked_by="retrieve")
    assert job is not None and job.key == "1.2.12"
    assert await board.claim("preload", blocked_by="retrieve") is None
    retrieval = await board.claim("retrieve")
    assert retrieval is not None
    await board.finish(retrieval.id, "done", "available")
    job = await board.claim("preload", blocked_by="retrieve")
    assert job is not None and job.key == "1.2.11"


async def test_runners_share_the_work_and_record_outcomes(services: NodeServices) -> None:
    done: list[tuple[str, str]] = []

    def runner(board: JobBoard) -> JobRunner:
        async def handler(job: ClaimedJob) -> tuple[str, str]:
            await asyncio.sleep(0.01)
            done.append((board.worker, job.key))
            return ("done", "ok") if job.key != "1.3.0" else ("failed", "refused")
        return JobRunner(board, FAST, "retrieve", handler, concurrency=2)

    runners = [runner(b) for b in boards(services, 2)]
    for r in runners:
        r.start()
    for i in range(12):
        await JobBoard(services.engine, FAST, "asker").enqueue("retrieve", f"1.3.{i}", {})
    await asyncio.wait_for(runners[0].wait_idle(), 10)
    for r in runners:
        await r.close()
    assert sorted(key for _, key in done) == sorted(f"1.3.{i}" for i in range(12))
    status, _ = await JobBoard(services.engine, FAST, "asker").enqueue(
        "retrieve", "1.3.0", {}, keep_done=lambda s: True)
    assert (status.state, status.outcome) == ("failed", "refused")


async def test_an_orderly_stop_hands_running_jobs_back(services: NodeServices) -> None:
    started = asyncio.Event()

    async def forever(job: ClaimedJob) -> tuple[str, str]:
        started.set()
        await asyncio.sleep(3600)
        return "done", ""

    first, second = boards(services, 2)
    stopping = JobRunner(first, FAST, "retrieve", forever, concurrency=1)
    stopping.start()
    await first.enqueue("retrieve", "1.4.1", {})
    stopping.wake()
    await asyncio.wait_for(started.wait(), 5)
    await stopping.close()
    assert await second.active("retrieve") == {"1.4.1": "queued"}
    job = await second.claim("retrieve")
    assert job is not None and job.attempts == 1


async def test_a_stop_during_a_claim_hands_the_claimed_job_back(services: NodeServices) -> None:
    """The claim ends before the stop does: cancelled between its commit and its bookkeeping,
    the job stayed claimed by the stopped instance until its heartbeat went stale."""
    claimed, go_on = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    class HeldBoard(JobBoard):
        async def claim(self, *args: Any, **kwargs: Any) -> ClaimedJob | None:
            job = await super().claim(*args, **kwargs)
            if job is not None:
                claimed.set()
                await go_on.wait()
            return job

    async def handler(job: ClaimedJob) -> tuple[str, str]:
        ran.append(job.key)
        return "done", ""

    first = HeldBoard(services.engine, FAST, "instance-0", MovableClock())
    second = boards(services, 1)[0]
    stopping = JobRunner(first, FAST, "retrieve", handler, concurrency=1)
    await first.enqueue("retrieve", "1.5.1", {})
    stopping.start()
    await asyncio.wait_for(claimed.wait(), 5)
    closing = asyncio.create_task(stopping.close())
    await asyncio.sleep(0)  # the stop starts (and, before, cancelled the claim here)
    go_on.set()
    await asyncio.wait_for(closing, 5)
    assert ran == []
    assert await second.active("retrieve") == {"1.5.1": "queued"}
