"""Hanging protocols: the user's, else the role's, else the global ones, recorded in the
context; rules place series by modality, body part and description."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.config import load_config
from node.errors import Conflict, InvalidInput
from node.viewing.hanging_protocols import Protocol, Rule, add_protocol, parse_rule
from node.viewing.issuance_catalogue import CATALOGUE_SECONDS
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app, write_config
from tests.test_rest_tokens import run_cli

STUDY = uid(9001)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("protocols"))


@pytest.fixture(scope="module")
async def api(config_path: Path) -> AsyncIterator[Api]:
    async with running_app(config_path.parent, config=load_config(config_path)) as api:
        await api.ingest(StudySpec(study_uid=STUDY, patient_id="PID-HP"))
        sessions = api.services.sessions
        await add_protocol(sessions, "global-1x1", "global", "", 1, 1, [Rule(1)])
        await add_protocol(sessions, "role-1x2", "role", ROLE, 1, 2,
                           [Rule(1, modality="CT"), Rule(2, modality="MR")])
        await add_protocol(sessions, "jane-2x2", "user", "janedoe", 2, 2,
                           [Rule(4, description="*lung*")])
        await asyncio.to_thread(run_cli, "role", "add", "guest", "--config", str(config_path))
        yield api


async def protocols_for(api: Api, username: str, role: str = ROLE) -> dict[str, object]:
    context = await api.context(await api.token(
        {"username": username, "role": role, "studyUID": STUDY}))
    return context["hangingProtocols"]  # type: ignore[no-any-return]


async def test_user_protocols_come_first(api: Api) -> None:
    chosen = await protocols_for(api, "janedoe")
    assert chosen["scope"] == "user"
    assert [p["name"] for p in chosen["protocols"]] == ["jane-2x2"]  # type: ignore[attr-defined]


async def test_role_protocols_when_the_user_has_none(api: Api) -> None:
    chosen = await protocols_for(api, "bob")
    assert chosen["scope"] == "role"
    protocol = chosen["protocols"][0]  # type: ignore[index]
    assert (protocol["rows"], protocol["columns"]) == (1, 2)
    assert protocol["rules"] == [{"cell": 1, "modality": "CT"}, {"cell": 2, "modality": "MR"}]


async def test_global_protocols_when_user_and_role_have_none(api: Api) -> None:
    chosen = await protocols_for(api, "bob", role="guest")
    assert chosen["scope"] == "global"


async def test_cli_adds_lists_and_removes_protocols(api: Api, config_path: Path) -> None:
    config = str(config_path)
    await asyncio.to_thread(run_cli, "protocol", "add", "guest-chest", "--role", "guest",
                            "--rows", "1", "--columns", "2", "--rule", "1:modality=CR",
                            "--rule", "2:body_part=CHEST,description=*lat*", "--config", config)
    listed = [json.loads(line) for line in
              (await asyncio.to_thread(run_cli, "protocol", "list", "--config", config))
              .splitlines()]
    mine = [p for p in listed if p["name"] == "guest-chest"]
    assert mine and mine[0]["owner"] == "guest"
    assert mine[0]["rules"][1] == {"cell": 2, "bodyPart": "CHEST", "description": "*lat*"}
    # Issuance sees protocol changes within CATALOGUE_SECONDS.
    api.clock.advance(CATALOGUE_SECONDS)
    assert (await protocols_for(api, "bob", role="guest"))["scope"] == "role"
    await asyncio.to_thread(run_cli, "protocol", "remove", "guest-chest", "--role", "guest",
                            "--config", config)
    api.clock.advance(CATALOGUE_SECONDS)
    assert (await protocols_for(api, "bob", role="guest"))["scope"] == "global"


async def test_duplicate_protocol_name_in_a_scope_is_a_conflict(api: Api) -> None:
    with pytest.raises(Conflict):
        await add_protocol(api.services.sessions, "global-1x1", "global", "", 1, 1, [])


async def test_rule_outside_the_layout_is_refused(api: Api) -> None:
    with pytest.raises(InvalidInput, match="outside"):
        await add_protocol(api.services.sessions, "x", "global", "", 1, 1, [Rule(2)])


@pytest.mark.parametrize("text", ["CT", "1:colour=red", "x:modality=CT", "1:modality="])
def test_malformed_rules_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_rule(text)


def test_rules_place_series_by_modality_body_part_and_description() -> None:
    protocol = Protocol(1, "p", "global", "", 1, 3, (
        parse_rule("1:modality=CT,body_part=CHEST"),
        parse_rule("2:description=*lung*"),
        parse_rule("3:modality=MR"),
    ))
    series = [("CT", "CHEST", "axial"), ("CT", "HEAD", "Lung window"), ("MR", "", ""),
              ("US", "", "")]
    assert protocol.place(series) == {0: 1, 1: 2, 2: 3}


async def test_role_cli_add_list_remove(api: Api, config_path: Path) -> None:
    config = str(config_path)
    out = await asyncio.to_thread(run_cli, "role", "add", "radiologist", "--allow",
                                  "search,download,layers", "--config", config)
    assert "download, layers, search" in out
    listing = await asyncio.to_thread(run_cli, "role", "list", "--config", config)
    assert "radiologist\tdownload,layers,search" in listing.splitlines()
    await api.token({"username": "u", "role": "radiologist", "studyUID": STUDY})
    await asyncio.to_thread(run_cli, "role", "remove", "radiologist", "--config", config)
    # A removed role stops being accepted within CATALOGUE_SECONDS.
    api.clock.advance(CATALOGUE_SECONDS)
    response = await api.get("/ngv/obscurl", {"username": "u", "role": "radiologist",
                                              "studyUID": STUDY})
    assert response.status == 400
    with pytest.raises(InvalidInput, match="unknown permission"):
        await asyncio.to_thread(run_cli, "role", "add", "x", "--allow", "fly", "--config",
                                config)
