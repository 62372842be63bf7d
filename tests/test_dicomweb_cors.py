"""CORS on the DICOMweb routes: off by default; for `[dicomweb] cors_origins` only."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import config_from_dict
from node.errors import ConfigError
from tests.factory import StudySpec, uid
from tests.rest_support import API_KEY, config_dict, running_app

VIEWER = "https://viewer.hospital.example"
STUDY = StudySpec(study_uid=uid(1980, 1), patient_id="CORS-1", rows=8, columns=8,
                  instances_per_series=1)
PREFLIGHT = {"Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "authorization"}


async def test_a_listed_origin_may_call_and_no_other(tmp_path: Path) -> None:
    async with running_app(tmp_path, dicomweb={"cors_origins": [VIEWER]}) as api:
        await api.ingest(STUDY)
        allowed = await api.client.options("/dicom-web/studies",
                                           headers={"Origin": VIEWER, **PREFLIGHT})
        assert allowed.status == 204
        assert allowed.headers["Access-Control-Allow-Origin"] == VIEWER
        assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
        refused = await api.client.options("/dicom-web/studies", headers={
            "Origin": "https://elsewhere.example", **PREFLIGHT})
        assert refused.status == 403
        assert "Access-Control-Allow-Origin" not in refused.headers
        # A streamed multipart answer carries the header too (set before its first byte).
        frames = await api.client.get(
            f"/dicom-web/studies/{STUDY.study_uid}/series/{STUDY.study_uid}.1/instances/"
            f"{STUDY.study_uid}.1.1/frames/1",
            headers={"Origin": VIEWER, "Authorization": API_KEY})
        assert frames.status == 200
        assert frames.headers["Access-Control-Allow-Origin"] == VIEWER
        other = await api.client.get("/dicom-web/studies", headers={
            "Origin": "https://elsewhere.example", "Authorization": API_KEY})
        assert other.status == 200
        assert "Access-Control-Allow-Origin" not in other.headers


async def test_cors_is_off_by_default(tmp_path: Path) -> None:
    async with running_app(tmp_path) as api:
        response = await api.client.options("/dicom-web/studies",
                                             headers={"Origin": VIEWER, **PREFLIGHT})
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers


def test_an_origin_must_be_an_origin() -> None:
    for bad in ("*", "https://viewer.example/path", "viewer.example"):
        with pytest.raises(ConfigError, match=r"dicomweb\.cors_origins"):
            config_from_dict(config_dict(dicomweb={"cors_origins": [bad]}))
