"""The node's own controls in OHIF's page, written into the session's app-config.js: the
"Download ISO" toolbar button, the patient switcher, and a study launched from the study
list loaded as a page of its own.

The first two use only what OHIF 3.13 offers from outside its bundle: the button is one more
entry of the `cornerstone.toolbarButtons` customization (its command a function, which OHIF's
CommandsManager runs as it is) placed in the toolbar's primary section; the switcher is an
element of the page's own, outside OHIF's React tree (React never removes it), filled from
GET /viewer/patients.
"""

from __future__ import annotations

import json
from typing import Any

from rest.ohif.patient_routes import PATIENTS_PATH
from rest.viewer.grants import Grant

ISO_BUTTON = "DownloadIso"
ISO_LABEL = "Download ISO"
# The session route that builds the study's ISO (rest/viewer/download.py).
ISO_ROUTE = "/ngv/api/studies/"
SWITCHER_ID = "viewnode-patient-switcher"


def toolbar_additions(grant: Grant) -> list[str]:
    """Ids of the node's buttons the session's toolbar gets."""
    return [ISO_BUTTON] if grant.features.get("download") else []


def iso_button(grant: Grant) -> str:
    """The "Download ISO" button, for a role with `download` in a session that is not
    anonymized (Grant.features drops `download` there: the medium carries the patient's data).

    It downloads the study of the active viewport (the one the reader looks at), or else the
    first study the window opened, through the session's own ISO route; the node answers 403
    for a study outside the grant whatever the page asks."""
    if ISO_BUTTON not in toolbar_additions(grant):
        return ""
    button = {"id": ISO_BUTTON, "uiType": "ohif.toolButton",
              "props": {"icon": "Download", "label": ISO_LABEL, "evaluate": "evaluate.action"}}
    return "\n".join([
        "function viewnodeCurrentStudy() {",
        "  try {",
        "    var grid = viewnodeServices.viewportGridService;",
        "    var viewport = grid.getState().viewports.get(grid.getActiveViewportId());",
        "    var set = viewnodeServices.displaySetService.getDisplaySetByUID(",
        "      viewport.displaySetInstanceUIDs[0]);",
        "    if (set && set.StudyInstanceUID) { return set.StudyInstanceUID; }",
        "  } catch (error) { /* no viewport yet: the window's first study */ }",
        "  return (new URLSearchParams(location.search).get('StudyInstanceUIDs') || '')",
        "    .split(',')[0];",
        "}",
        "function viewnodeDownloadIso() {",
        "  var study = viewnodeCurrentStudy();",
        "  if (!study) { return; }",
        "  var link = document.createElement('a');",
        f"  link.href = {_js(ISO_ROUTE)} + encodeURIComponent(study) + '/iso';",
        "  link.download = '';",
        "  document.body.appendChild(link);",
        "  link.click();",
        "  link.remove();",
        "}",
        f"var viewnodeIsoButton = {_js(button)};",
        "viewnodeIsoButton.props.commands = viewnodeDownloadIso;",
        "window.config.customizationService.global['cornerstone.toolbarButtons'] = "
        "{$push: [viewnodeIsoButton]};",
    ]) + "\n"


def patient_switcher() -> str:
    """The patient switcher: shown only when the session's context has several patients; each
    entry opens that patient's window (a new page load, so OHIF starts clean on one patient)."""
    return "\n".join([
        "function viewnodeSwitcher(patients) {",
        "  document.documentElement.dataset.viewnodePatients = String(patients.length);",
        "  if (patients.length < 2) { return; }",
        "  var opened = (new URLSearchParams(location.search).get('StudyInstanceUIDs') || '')",
        "    .split(',');",
        "  var select = document.createElement('select');",
        f"  select.id = {_js(SWITCHER_ID)};",
        "  select.setAttribute('aria-label', 'Patient');",
        "  select.title = 'Patient';",
        "  select.style.cssText = 'position:fixed;top:10px;left:170px;"
        "z-index:1000;max-width:22em;background:#090c29;color:#fff;border:1px solid #3a3f99;"
        "border-radius:4px;padding:3px 6px;font-size:13px';",
        "  var shown = patients.filter(function (patient) {",
        "    return patient.studyInstanceUIDs.indexOf(opened[0]) >= 0;",
        "  }).length;",
        "  if (!shown) {",
        "    // A study opened from the study list: none of the context's patients.",
        "    var other = document.createElement('option');",
        "    other.textContent = 'Choose a patient';",
        "    other.disabled = other.selected = true;",
        "    select.appendChild(other);",
        "  }",
        "  patients.forEach(function (patient, index) {",
        "    var option = document.createElement('option');",
        "    option.value = String(index);",
        "    option.textContent = patient.label;",
        "    option.selected = patient.studyInstanceUIDs.indexOf(opened[0]) >= 0;",
        "    select.appendChild(option);",
        "  });",
        "  select.addEventListener('change', function () {",
        "    location.assign(patients[Number(select.value)].url);",
        "  });",
        "  document.body.appendChild(select);",
        "}",
        "function viewnodeLoadPatients() {",
        f"  fetch({_js(PATIENTS_PATH)}, {{credentials: 'same-origin'}})",
        "    .then(function (response) { return response.ok ? response.json() : null; })",
        "    .then(function (answer) { if (answer) { viewnodeSwitcher(answer.patients); } });",
        "}",
        "if (document.readyState === 'loading') {",
        "  document.addEventListener('DOMContentLoaded', viewnodeLoadPatients);",
        "} else {",
        "  viewnodeLoadPatients();",
        "}",
    ]) + "\n"


def study_list_opening(grant: Grant) -> str:
    """For a session with OHIF's study list: a study launched from the list loads the
    viewer's page anew rather than moving OHIF's router to it. The node's page route then
    sees the study (a source node's is added to the session and retrieved behind the waiting
    page, found_opening.py), and the window starts clean on that study's own patient.

    OHIF 3.13's study list launches a workflow by its router's navigate(), which ends in
    history.pushState: that one browser method is wrapped (OHIF itself is untouched), and a
    move from the list (no StudyInstanceUIDs) to a viewer route (with them) becomes a page
    load."""
    if not grant.features.get("search"):
        return ""
    return "\n".join([
        "(function () {",
        "  var push = window.history.pushState;",
        "  window.history.pushState = function (state, title, url) {",
        "    if (url !== undefined && url !== null &&",
        "        !new URLSearchParams(location.search).has('StudyInstanceUIDs')) {",
        "      var next = new URL(String(url), location.href);",
        "      if (next.origin === location.origin &&",
        "          next.searchParams.has('StudyInstanceUIDs')) {",
        "        location.assign(next.href);",
        "        return;",
        "      }",
        "    }",
        "    return push.apply(this, arguments);",
        "  };",
        "})();",
    ]) + "\n"


def _js(value: Any) -> str:
    """A JSON value as a script literal ("</" escaped, so it cannot end a script element)."""
    return json.dumps(value).replace("</", "<\\/")
