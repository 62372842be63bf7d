"""Hanging protocols the node registers in OHIF (through an extension of its own that the
generated app-config.js defines), as OHIF's protocol data."""

from __future__ import annotations

from typing import Any

EXTENSION_ID = "viewnode"
# The second monitor: the first two studies of the URL (the priors, same modality first, then
# newest) side by side, each in its first image series.
PRIORS_SIDE_BY_SIDE = "viewnode.priorsSideBySide"


def _study_selector(index: int) -> dict[str, Any]:
    return {
        "studyMatchingRules": [{
            "attribute": "studyInstanceUIDsIndex", "from": "options", "required": True,
            "constraint": {"equals": {"value": index}}}],
        "seriesMatchingRules": [{
            "attribute": "numImageFrames", "constraint": {"greaterThan": {"value": 0}}}],
    }


def _viewport(selector: str) -> dict[str, Any]:
    return {"viewportOptions": {"viewportType": "stack", "toolGroupId": "default",
                                "allowUnmatchedView": True},
            "displaySets": [{"id": selector}]}


def priors_side_by_side() -> dict[str, Any]:
    return {
        "id": PRIORS_SIDE_BY_SIDE,
        "name": "Priors side by side",
        "numberOfPriorsReferenced": 1,
        "protocolMatchingRules": [],
        "toolGroupIds": ["default"],
        "displaySetSelectors": {"first": _study_selector(0), "second": _study_selector(1)},
        "defaultViewport": {**_viewport("first"),
                            "displaySets": [{"id": "first", "matchedDisplaySetsIndex": -1}]},
        "stages": [{
            "name": "1x2",
            "viewportStructure": {"layoutType": "grid", "properties": {"rows": 1, "columns": 2}},
            "viewports": [_viewport("first"), _viewport("second")],
        }],
    }


def protocol_module() -> list[dict[str, Any]]:
    """What the extension's getHangingProtocolModule() answers."""
    protocol = priors_side_by_side()
    return [{"name": protocol["id"], "protocol": protocol}]
