"""The request bodies of the spec's "Access Token API (POST)" examples, as written there
(post_examples.json), and the few substitutions a test on loopback needs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EXAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).with_name("post_examples.json")).read_text())

# The spec's placeholder for the Google key; a test puts a real (generated) key there.
GOOGLE_TOKEN_PLACEHOLDER = "[base64 encoded service account key]"


def example(name: str, **storage: Any) -> dict[str, Any]:
    """A fresh copy of one example; `storage` replaces fields of every study's storage."""
    body = copy.deepcopy(EXAMPLES[name])
    for study in body.get("studies", []):
        if "storage" in study:
            study["storage"].update(storage)
    return body


def files_of(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(file, mimeType) of every instance of a body."""
    return [(i["file"], i.get("mimeType", "")) for study in body.get("studies", [])
            for series in study.get("series", []) for i in series.get("instances", [])]
