"""Hanging protocols the node registers in OHIF (through an extension of its own that the
generated app-config.js defines), as OHIF's protocol data.

- The second monitor's priors side by side (chosen by its URL).
- The session's protocol from the database (user > role > global, snapshot in the viewing
  context): the node places the first opened study's series itself, with its own matching
  (node/viewing/hanging_protocols.py: wildcards, any case), and hands OHIF a protocol whose cells
  name those series by UID, matched to that study with a weight above OHIF's own protocols. The
  protocol placing the most series is used; when none places any, OHIF's default layout stays.
"""

from __future__ import annotations

from typing import Any

from node.render import StoredSeries, is_image
from node.viewing.hanging_protocols import Protocol, snapshot_protocols

EXTENSION_ID = "viewnode"
SESSION_PROTOCOL = "viewnode.session"
# Above the weights of OHIF's own protocols' matching rules, so that this one is chosen.
SESSION_WEIGHT = 10_000
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


def _series_selector(series_uid: str) -> dict[str, Any]:
    return {"seriesMatchingRules": [{
        "attribute": "SeriesInstanceUID", "required": True,
        "constraint": {"equals": {"value": series_uid}}}]}


def _placed(protocol: Protocol, shown: list[StoredSeries]) -> dict[int, int]:
    return protocol.place([(s.modality, s.body_part, s.description) for s in shown])


def session_protocol(snapshot: dict[str, Any], study_uid: str,
                     series: list[StoredSeries]) -> dict[str, Any] | None:
    """OHIF's protocol for the study a session opens first, or None for OHIF's default."""
    shown = [s for s in series
             if any(is_image(i.sop_class_uid, i.transfer_syntax) for i in s.instances)]
    best: tuple[Protocol, dict[int, int]] | None = None
    for protocol in snapshot_protocols(snapshot):
        placed = _placed(protocol, shown)
        if placed and (best is None or len(placed) > len(best[1])):
            best = (protocol, placed)
    if best is None:
        return None
    protocol, placed = best
    cells: list[str | None] = [None] * (protocol.rows * protocol.columns)
    for index, cell in placed.items():
        if cells[cell - 1] is None:
            cells[cell - 1] = shown[index].series_uid
    # Cells no rule filled take the study's other image series in order.
    rest = [s.series_uid for s in shown if s.series_uid not in cells]
    cells = [cell if cell is not None else (rest.pop(0) if rest else None) for cell in cells]
    selectors = {f"cell{n}": _series_selector(uid) for n, uid in enumerate(cells, 1)
                 if uid is not None}
    # An empty cell shows nothing: a selector no series matches.
    selectors["empty"] = _series_selector("")
    viewports = [_viewport(f"cell{n}" if uid is not None else "empty")
                 for n, uid in enumerate(cells, 1)]
    first = next(iter(selectors))
    return {
        "id": SESSION_PROTOCOL,
        "name": protocol.name,
        "protocolMatchingRules": [{
            "attribute": "StudyInstanceUID", "required": True, "weight": SESSION_WEIGHT,
            "constraint": {"equals": {"value": study_uid}}}],
        "toolGroupIds": ["default"],
        "displaySetSelectors": selectors,
        "defaultViewport": {**_viewport(first),
                            "displaySets": [{"id": first, "matchedDisplaySetsIndex": -1}]},
        "stages": [{
            "name": protocol.name,
            "viewportStructure": {"layoutType": "grid", "properties": {
                "rows": protocol.rows, "columns": protocol.columns}},
            "viewports": viewports,
        }],
    }


def protocol_module(session: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What the extension's getHangingProtocolModule() answers."""
    protocols = [priors_side_by_side()] + ([session] if session is not None else [])
    return [{"name": protocol["id"], "protocol": protocol} for protocol in protocols]
