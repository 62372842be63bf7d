"""Token life: redeemed once for a session cookie, expiry, revocation, and the audit trail."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from node.config import load_config
from node.errors import NotFound
from node.index.viewing_models import AuditEvent, ViewingContext
from node.viewing.token_secrets import digest, token_key
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app, write_config

STUDY = uid(6001)
PARAMS = {"username": "janedoe", "role": ROLE, "studyUID": STUDY}


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("tokens")) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-TOK"))
        yield api


def run_cli(*argv: str) -> str:
    """The node's role/token/protocol commands as `python -m node` runs them, in-process."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("role", "token", "protocol"):
        importlib.import_module(f"node.commands.{name}_command").register(sub)
    args = parser.parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    return out.getvalue()


async def test_redeem_sets_a_strict_http_only_cookie_and_redirects(api: Api) -> None:
    response, cookie = await api.redeem(await api.token(PARAMS))
    assert response.status == 302
    assert response.headers["Location"] == f"/viewer/viewer?StudyInstanceUIDs={STUDY}"
    assert cookie is not None and len(cookie) == 64
    set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Max-Age=28800" in set_cookie


async def test_a_token_is_redeemed_only_once(api: Api) -> None:
    token = await api.token(PARAMS)
    first, _ = await api.redeem(token)
    second, cookie = await api.redeem(token)
    assert first.status == 302
    assert second.status == 403 and cookie is None
    text = await second.text()
    assert "already been used" in text and "Traceback" not in text
    assert second.content_type == "text/html"


async def test_concurrent_redeems_let_exactly_one_through(api: Api) -> None:
    token = await api.token(PARAMS)
    results = await asyncio.gather(*(api.client.get(f"/ngv?q={token}", allow_redirects=False)
                                     for _ in range(8)))
    assert sorted(r.status for r in results) == [302] + [403] * 7


@pytest.mark.parametrize("q", ["0" * 64, "not-a-token", ""])
async def test_unknown_token_is_a_404_page(api: Api, q: str) -> None:
    response, cookie = await api.redeem(f"/ngv?q={q}")
    assert response.status == 404 and cookie is None
    assert "not valid" in await response.text()


async def test_session_cookie_opens_the_context(api: Api) -> None:
    context = await api.context(await api.token(PARAMS))
    assert [s["studyInstanceUID"] for s in context["studies"]] == [STUDY]
    assert context["studies"][0]["state"] == "available"


async def test_context_without_or_with_a_bad_cookie_is_401(api: Api) -> None:
    assert (await api.client.get("/ngv/api/context")).status == 401
    bad = await api.client.get("/ngv/api/context", headers={"Cookie": "ngv_session=" + "a" * 64})
    assert bad.status == 401


async def test_context_needs_no_api_key_but_the_cookie(api: Api) -> None:
    _, cookie = await api.redeem(await api.token(PARAMS))
    response = await api.client.get("/ngv/api/context", headers={"Cookie": f"ngv_session={cookie}"})
    assert response.status == 200


async def test_viewer_page_opens_with_a_session_only(api: Api) -> None:
    _, cookie = await api.redeem(await api.token(PARAMS))
    page = await api.client.get("/viewer/viewer", headers={"Cookie": f"ngv_session={cookie}"})
    assert page.status == 200 and "/viewer/app-config.js" in await page.text()
    config = await api.client.get("/viewer/app-config.js",
                                  headers={"Cookie": f"ngv_session={cookie}"})
    assert config.status == 200 and "/dicom-web" in await config.text()
    refused = await api.client.get("/viewer/viewer")
    assert refused.status == 401 and "No viewer session" in await refused.text()
    assert (await api.client.get("/viewer/app-config.js")).status == 401


async def test_sticky_follows_the_redirect(api: Api) -> None:
    response, _ = await api.redeem(await api.token({**PARAMS, "sticky": "abc"}))
    assert response.headers["Location"] == (
        f"/viewer/viewer?StudyInstanceUIDs={STUDY}&sticky=abc")
    assert response.headers["X-Sticky"] == "abc"


async def test_issue_and_redeem_are_audited_with_address(api: Api) -> None:
    token = await api.token({**PARAMS, "username": "auditor"})
    await api.redeem(token)
    await api.redeem(token)
    async with api.services.sessions() as session:
        context_id = await session.scalar(select(ViewingContext.id).where(
            ViewingContext.token_hash == token_key(token)))
        events = (await session.scalars(select(AuditEvent).where(
            AuditEvent.context_pk == context_id).order_by(AuditEvent.id))).all()
    assert [e.action for e in events] == ["issue", "redeem", "redeem-refused"]
    assert all(e.username == "auditor" and e.role == ROLE for e in events)
    assert all(e.client_address == "127.0.0.1" for e in events)
    assert events[0].detail["request"]["studyUID"] == [STUDY]
    assert events[2].detail["reason"] == "used"


async def test_tokens_are_stored_only_as_digests(api: Api) -> None:
    token = await api.token(PARAMS)
    async with api.services.sessions() as session:
        stored = (await session.scalars(select(ViewingContext.token_hash))).all()
    assert token not in stored and token_key(token) in stored
    assert not any(token[16:] in key for key in stored)


async def test_a_token_stored_by_a_node_before_migration_0004_still_opens(api: Api) -> None:
    """Such a node kept the token's bare digest; the token stays valid until it expires."""
    token = await api.token(PARAMS)
    async with api.services.sessions() as session:
        await session.execute(update(ViewingContext).where(
            ViewingContext.token_hash == token_key(token)).values(token_hash=digest(token)))
        await session.commit()
    response, cookie = await api.redeem(token)
    assert response.status == 302 and cookie is not None
    response, cookie = await api.redeem(token)
    assert response.status == 403 and cookie is None


async def test_stored_times_compare_in_sql(api: Api) -> None:
    """Expiry and purge compare times inside SQL, so a context must be stored in the format
    the database compares correctly (on SQLite: SQLAlchemy's text form, not isoformat)."""
    token = await api.token(PARAMS)
    lifetime = timedelta(seconds=api.services.config.api.token_lifetime_seconds)
    now = datetime.now(UTC)
    async with api.services.sessions() as session:
        expires = (await session.scalars(select(ViewingContext.id).where(
            ViewingContext.token_hash == token_key(token),
            ViewingContext.expires_at > now + lifetime - timedelta(seconds=30),
            ViewingContext.expires_at < now + lifetime + timedelta(seconds=30)))).all()
        audited = (await session.scalars(select(AuditEvent.id).where(
            AuditEvent.context_pk.in_(expires), AuditEvent.at > now - timedelta(seconds=30),
            AuditEvent.at < now + timedelta(seconds=30)))).all()
    assert len(expires) == 1 and len(audited) == 1


async def test_token_expires_after_its_lifetime(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("expiry")
    async with running_app(folder) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-TOK"))
        early, late = await api.token(PARAMS), await api.token(PARAMS)
        api.clock.advance(api.services.config.api.token_lifetime_seconds - 60)
        assert (await api.redeem(early))[0].status == 302
        api.clock.advance(60)
        response, cookie = await api.redeem(late)
        assert response.status == 403 and cookie is None
        assert "expired" in await response.text()


async def test_session_expires_after_its_lifetime(
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("session-expiry")
    async with running_app(folder) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-TOK"))
        _, cookie = await api.redeem(await api.token(PARAMS))
        headers = {"Cookie": f"ngv_session={cookie}"}
        api.clock.advance(api.services.config.api.session_lifetime_seconds - 60)
        assert (await api.client.get("/ngv/api/context", headers=headers)).status == 200
        api.clock.advance(60)
        assert (await api.client.get("/ngv/api/context", headers=headers)).status == 401


async def test_cli_revokes_a_token_and_its_sessions(
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("revoke")
    config_path = write_config(folder)
    async with running_app(folder, config=load_config(config_path)) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-TOK"))
        used, unused = await api.token(PARAMS), await api.token(PARAMS)
        _, cookie = await api.redeem(used)
        headers = {"Cookie": f"ngv_session={cookie}"}
        out = await asyncio.to_thread(run_cli, "token", "revoke", used, "--config",
                                      str(config_path))
        assert "1 session(s) ended" in out
        assert (await api.client.get("/ngv/api/context", headers=headers)).status == 401
        await asyncio.to_thread(run_cli, "token", "revoke", unused, "--config", str(config_path))
        response, _ = await api.redeem(unused)
        assert response.status == 403 and "revoked" in await response.text()
        with pytest.raises(NotFound):
            await asyncio.to_thread(run_cli, "token", "revoke", "f" * 64, "--config",
                                    str(config_path))


async def test_cli_ends_every_session_of_a_user(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("revoke-user")
    config_path = write_config(folder)
    async with running_app(folder, config=load_config(config_path)) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-TOK"))
        cookies = [(await api.redeem(await api.token({**PARAMS, "username": user})))[1]
                   for user in ("bob", "bob", "alice")]
        out = await asyncio.to_thread(run_cli, "token", "revoke-sessions", "--user", "bob",
                                      "--config", str(config_path))
        assert "2 session(s)" in out
        statuses = [(await api.client.get(
            "/ngv/api/context", headers={"Cookie": f"ngv_session={c}"})).status for c in cookies]
        assert statuses == [401, 401, 200]


async def test_cli_purges_contexts_nobody_can_use(
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("purge")
    config_path = write_config(folder)
    async with running_app(folder, config=load_config(config_path)) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-TOK"))
        # Issued, and redeemed, longer ago than either lifetime by the app's clock; the CLI
        # purges by the real one.
        lifetimes = api.services.config.api
        ago = max(lifetimes.token_lifetime_seconds, lifetimes.session_lifetime_seconds) + 60
        api.clock.advance(-ago)
        unused = await api.token(PARAMS)
        await api.redeem(await api.token(PARAMS))
        api.clock.advance(ago)
        fresh = await api.token(PARAMS)
        out = await asyncio.to_thread(run_cli, "token", "purge", "--older-than-hours", "0",
                                      "--config", str(config_path))
        assert "2 viewing context(s) purged" in out
        async with api.services.sessions() as session:
            left = (await session.scalars(select(ViewingContext.token_hash))).all()
            audited = (await session.scalars(select(AuditEvent.action))).all()
        assert left == [token_key(fresh)] and token_key(unused) not in left
        assert audited.count("issue") == 3
