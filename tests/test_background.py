"""Background loops stop between their steps, and writes a cancelled task must make run to
their end (node/process/background.py): a node stopped while a loop committed printed
SQLAlchemy's traceback of the cancelled return of the connection to its pool."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from node.process.background import Periodic, to_completion


async def test_a_stop_lets_the_step_under_way_commit_and_return_its_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    sessions = async_sessionmaker(engine)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE steps (n INTEGER)"))
    started, ended = asyncio.Event(), asyncio.Event()

    async def step() -> None:
        started.set()
        async with sessions() as session:
            for n in range(200):  # long enough that the stop comes during it
                await session.execute(text("INSERT INTO steps VALUES (:n)"), {"n": n})
            await session.commit()
        ended.set()

    periodic = Periodic(step, 3600, "test step")
    periodic.start()
    await asyncio.wait_for(started.wait(), 5)
    with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
        await periodic.stop()
    assert ended.is_set()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM steps"))).scalar() == 200
    assert [r for r in caplog.records if r.name.startswith("sqlalchemy")] == []
    await engine.dispose()


async def test_a_step_is_not_run_again_once_stopped_and_runs_at_once_when_woken() -> None:
    runs: list[int] = []
    ran = asyncio.Event()

    async def step() -> None:
        runs.append(len(runs))
        ran.set()

    periodic = Periodic(step, 3600, "test step")
    periodic.start()
    await asyncio.wait_for(ran.wait(), 5)
    ran.clear()
    periodic.wake()  # not after the hour: now
    await asyncio.wait_for(ran.wait(), 5)
    await periodic.stop()
    assert runs == [0, 1]


async def test_a_failing_step_is_logged_by_type_only_and_tried_again(
        caplog: pytest.LogCaptureFixture) -> None:
    tries: list[int] = []
    second = asyncio.Event()

    async def step() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("SELECT ... WHERE PatientName = 'DOE^JANE'")
        second.set()

    periodic = Periodic(step, 0.01, "test step")
    with caplog.at_level(logging.WARNING, logger="node.process.background"):
        periodic.start()
        await asyncio.wait_for(second.wait(), 5)
        await periodic.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("test step failed (RuntimeError)" in m for m in messages)
    assert not any("DOE" in m for m in messages)


async def test_a_step_that_ignores_the_stop_is_cancelled_after_the_grace() -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def step() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    periodic = Periodic(step, 3600, "test step")
    periodic.start()
    await asyncio.wait_for(started.wait(), 5)
    await periodic.stop(grace=0.05)
    assert cancelled.is_set()


async def test_a_cancelled_caller_waits_for_the_write_then_is_cancelled() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    written: list[str] = []

    async def write() -> str:
        entered.set()
        await release.wait()
        written.append("row")
        return "row"

    async def caller() -> str:
        return await to_completion(write())

    task = asyncio.create_task(caller())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    await asyncio.sleep(0)  # the cancellation reaches the caller
    assert not task.done()  # asyncio.shield would have let it return here
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert written == ["row"]
