// The viewer page: which patient and study are open, how the image area is laid out, the
// keyboard, and polling while studies are still being retrieved. The window shows one patient
// at a time: opening a study of another patient of the session switches the banner and the
// study list to that patient first.
import { getJson, studyUrl, viewerConfig } from "./api.js";
import { Patients } from "./banner.js";
import { bindSearch, markThumbnail, renderDocuments, renderThumbnails } from "./panels.js";
import { Viewport } from "./viewport.js";

const config = viewerConfig();
const $ = (id) => document.getElementById(id);
const grid = $("grid");
const statusLine = $("status");
const thumbnails = $("thumbnails");
const POLL_MS = 1500;
const WAITING = new Set(["pending", "retrieving"]);

const state = {
  studies: config.studies,
  patients: new Patients(config.patients, config.anonymize),
  patient: config.patient,
  open: null,
  listing: null,
  viewports: [],
  active: null,
  poll: null,
  tool: "window",
};

function setStatus(text, error = false) {
  statusLine.textContent = text || "";
  statusLine.classList.toggle("error", Boolean(error));
}

function stateText(study) {
  if (study.state === "not-found") return "Study not found";
  if (study.state === "failed") return "Retrieval failed" + (study.message ? `: ${study.message}` : "");
  if (WAITING.has(study.state)) return `Retrieving study… ${study.instances || 0} images received`;
  return "";
}

// ---- layout -------------------------------------------------------------------------------

function layoutGrid(rows, columns) {
  for (const viewport of state.viewports) viewport.stopCine();
  grid.replaceChildren();
  grid.dataset.rows = String(rows);
  grid.dataset.columns = String(columns);
  grid.style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
  grid.style.gridTemplateColumns = `repeat(${columns}, minmax(0, 1fr))`;
  state.viewports = [];
  for (let position = 0; position < rows * columns; position += 1) {
    state.viewports.push(new Viewport(grid, position, {
      onActivate: activate,
      identify: identify,
      onCine: (viewport, playing) => {
        if (viewport === state.active) $("cine").setAttribute("aria-pressed", String(playing));
      },
    }));
  }
  for (const viewport of state.viewports) viewport.setTool(state.tool);
  activate(state.viewports[0]);
}

function activate(viewport) {
  if (!viewport || state.active === viewport) return;
  for (const other of state.viewports) other.root.classList.toggle("active", other === viewport);
  state.active = viewport;
  $("cine").setAttribute("aria-pressed", String(Boolean(viewport.cine)));
  if (viewport.series) markThumbnail(thumbnails, viewport.series.seriesInstanceUID);
}

// ---- patients -----------------------------------------------------------------------------

// What a viewport's overlay says of the study it shows: its patient and its date.
function identify(uid) {
  const study = studyInfo(uid);
  return study ? state.patients.overlay(study.patient, study.studyDate) : { patient: "", date: "" };
}

function renderPatient() {
  state.patients.renderBanner($("patient"), state.patient);
  state.patients.renderSwitch($("patient-switch"), state.patient, switchPatient);
}

// Show `key`'s banner and studies; the image area, thumbnails and documents of the patient shown
// before are cleared, so that nothing of theirs stays under the new name.
function setPatient(key) {
  if (key === state.patient) return;
  state.patient = key;
  stopPolling();
  state.open = null;
  state.listing = null;
  layoutGrid(1, 1);
  thumbnails.replaceChildren();
  $("document-list")?.replaceChildren();
  $("document-view")?.replaceChildren();
  setStatus("");
  renderPatient();
  renderStudyList();
}

function patientStudies() {
  return state.studies.filter((s) => s.patient === state.patient);
}

function switchPatient(key) {
  setPatient(key);
  if (config.monitor === "secondary") return openPriors();
  const mine = patientStudies();
  const first = mine.find((s) => s.purpose === "open" || s.purpose === "search") || mine[0];
  if (first && first.studyInstanceUID !== state.open) openStudy(first.studyInstanceUID);
}

// ---- studies ------------------------------------------------------------------------------
// Images of a study that is still arriving are shown only after the study list has been read
// again *after* its series: until its first image is in the index, its patient is only what
// the calling system claimed, and images that have just arrived must not be shown under that
// claim if they are another patient's.

function renderStudyList() {
  const list = $("study-list");
  list.replaceChildren();
  for (const study of patientStudies()) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = `study state-${study.state}` + (study.studyInstanceUID === state.open ? " open" : "");
    button.dataset.study = study.studyInstanceUID;
    button.dataset.purpose = study.purpose;
    button.dataset.state = study.state;
    const date = document.createElement("span");
    date.className = "study-date";
    date.textContent = study.studyDate || "";
    const description = document.createElement("span");
    description.className = "study-description";
    description.textContent = study.studyDescription || "(no description)";
    const meta = document.createElement("span");
    meta.className = "study-meta";
    const parts = [study.modalities.join(", ")];
    if (study.instances) parts.push(`${study.instances} images`);
    meta.textContent = parts.filter(Boolean).join(" · ");
    if (study.state !== "available") {
      const flag = document.createElement("span");
      flag.className = "study-state";
      flag.textContent = ` · ${study.state}`;
      meta.appendChild(flag);
    }
    button.append(date, description, meta);
    item.appendChild(button);
    list.appendChild(item);
  }
}

$("study-list").addEventListener("click", (event) => {
  const button = event.target.closest("button.study");
  if (button) openStudy(button.dataset.study);
});

// The study list again. A study that has arrived may turn out to be another patient's than the
// one shown (its patient was not known before): the window then switches to that patient and
// this returns the study's UID for the caller to open again; else null.
async function refreshStudies() {
  const answer = await getJson("/ngv/api/studies");
  state.studies = answer.studies;
  state.patients.update(answer.patients);
  const open = state.open && studyInfo(state.open);
  if (open && open.patient !== state.patient) {
    const uid = state.open;
    setPatient(open.patient);
    return uid;
  }
  if (!state.patients.byKey.has(state.patient) && answer.patients.length) setPatient(answer.patients[0].key);
  renderPatient();
  renderStudyList();
  for (const viewport of state.viewports) viewport.writeOverlays();
  return null;
}

function studyInfo(uid) {
  return state.studies.find((s) => s.studyInstanceUID === uid);
}

function imageSeries(listing) {
  return listing.series.filter((s) => s.kind === "image" || s.kind === "video");
}

async function openStudy(uid) {
  const study = studyInfo(uid);
  if (!study) return setStatus("This study is not part of the session", true);
  setPatient(study.patient);
  stopPolling();
  state.open = uid;
  renderStudyList();
  if (study.state === "not-found") {
    layoutGrid(1, 1);
    state.viewports[0].setMessage("Study not found", "error");
    state.viewports[0].root.dataset.state = "not-found";
    thumbnails.replaceChildren();
    setStatus("");
    return;
  }
  layoutGrid(1, 1);
  state.viewports[0].setMessage("Loading study…", "loading");
  try {
    const listing = await getJson(studyUrl(uid, "/series"));
    if (WAITING.has(study.state)) {
      const moved = await refreshStudies();
      if (moved) return openStudy(moved);
    }
    if (state.open !== uid) return;
    showListing(uid, listing, true);
  } catch (error) {
    state.viewports[0].setMessage(error.message, "error");
  }
}

function showListing(uid, listing, relayout) {
  const before = state.listing;
  state.listing = listing;
  const study = studyInfo(uid) || { state: listing.state };
  const waiting = WAITING.has(study.state) || WAITING.has(listing.state);
  renderThumbnails(thumbnails, uid, listing, config.thumbnailQuery, (series) => {
    state.active.show(uid, series);
    markThumbnail(thumbnails, series.seriesInstanceUID);
  });
  renderDocuments($("document-list"), $("document-view"), uid, listing);
  const bySeries = new Map(listing.series.map((s) => [s.seriesInstanceUID, s]));
  if (relayout || !before || !before.series.length) {
    const layout = listing.layout;
    layoutGrid(layout.rows, layout.columns);
    layout.cells.forEach((seriesUid, position) => {
      const series = seriesUid && bySeries.get(seriesUid);
      if (series) state.viewports[position].show(uid, series);
      else state.viewports[position].setMessage(waiting ? stateText(study) : "", waiting ? "loading" : "");
    });
  } else {
    // New instances arrived: each viewport keeps its series and image, with a longer stack.
    for (const viewport of state.viewports) {
      const series = viewport.series && bySeries.get(viewport.series.seriesInstanceUID);
      if (series) viewport.show(uid, series);
    }
  }
  if (!listing.series.length) {
    state.viewports[0].setMessage(waiting ? stateText(study) : (study.state === "failed" ? stateText(study) : "This study has no images"), waiting ? "loading" : "error");
  }
  if (state.active && state.active.series) markThumbnail(thumbnails, state.active.series.seriesInstanceUID);
  setStatus(waiting ? stateText(study) : "");
  if (waiting) startPolling(uid);
}

function startPolling(uid) {
  stopPolling();
  state.poll = setTimeout(async () => {
    try {
      const listing = await getJson(studyUrl(uid, "/series"));
      const moved = await refreshStudies();
      if (moved) return openStudy(moved);
      if (state.open === uid) showListing(uid, listing, false);
    } catch (error) {
      setStatus(error.message, true);
    }
  }, POLL_MS);
}

function stopPolling() {
  if (state.poll) clearTimeout(state.poll);
  state.poll = null;
}

// ---- the secondary monitor: priors side by side -----------------------------------------------

async function openPriors() {
  const priors = patientStudies().filter((s) => s.purpose === "prior" || s.purpose === "open").slice(0, 3);
  if (!priors.length) {
    layoutGrid(1, 1);
    state.viewports[0].setMessage("No prior studies for comparison");
    return;
  }
  layoutGrid(1, priors.length);
  state.open = priors[0].studyInstanceUID;
  renderStudyList();
  const patient = state.patient;
  const answers = await Promise.all(priors.map(async (study) => {
    if (study.state === "not-found") return { error: "Study not found" };
    try {
      return { listing: await getJson(studyUrl(study.studyInstanceUID, "/series")) };
    } catch (error) {
      return { error: error.message };
    }
  }));
  const waiting = priors.some((s) => WAITING.has(s.state));
  if (waiting) {
    await refreshStudies();
    if (state.patient !== patient) return openPriors();
  }
  priors.forEach((study, position) => {
    const viewport = state.viewports[position];
    const { listing, error } = answers[position];
    if (error) return viewport.setMessage(error, "error");
    const now = studyInfo(study.studyInstanceUID) || study;
    if (now.patient !== patient) return viewport.setMessage("This study is another patient's", "error");
    const series = imageSeries(listing)[0];
    if (series) viewport.show(study.studyInstanceUID, series);
    else viewport.setMessage(stateText(now) || "No images", WAITING.has(now.state) ? "loading" : "");
    if (position === 0) {
      state.listing = listing;
      renderThumbnails(thumbnails, study.studyInstanceUID, listing, config.thumbnailQuery, (picked) => state.active.show(study.studyInstanceUID, picked));
      renderDocuments($("document-list"), $("document-view"), study.studyInstanceUID, listing);
    }
  });
  if (waiting) setTimeout(openPriors, POLL_MS);
}

// ---- toolbar and keyboard ---------------------------------------------------------------------

const presets = $("presets");
const presetList = config.presets.CT || [];
presetList.forEach(([name, center, width], index) => {
  const option = document.createElement("option");
  option.value = String(index);
  option.textContent = `${index + 1} ${name} (${width}/${center})`;
  presets.appendChild(option);
});
function applyPreset(index) {
  if (!state.active) return;
  const preset = presetList[index];
  presets.value = preset ? String(index) : "";
  if (preset) state.active.setWindow({ center: preset[1], width: preset[2] });
  else state.active.resetView();
}
presets.addEventListener("change", () => applyPreset(presets.value === "" ? -1 : Number(presets.value)));

function setTool(tool) {
  state.tool = tool;
  for (const name of ["window", "pan", "zoom"]) {
    const button = $("tool-" + name);
    button.classList.toggle("active", name === tool);
    button.setAttribute("aria-pressed", String(name === tool));
  }
  for (const viewport of state.viewports) viewport.setTool(tool);
}
for (const name of ["window", "pan", "zoom"]) $("tool-" + name).addEventListener("click", () => setTool(name));

function toggleTray() {
  const tray = $("tray");
  const collapsed = !tray.classList.contains("collapsed");
  tray.classList.toggle("collapsed", collapsed);
  document.querySelector(".workspace").classList.toggle("tray-collapsed", collapsed);
  $("tray-toggle").setAttribute("aria-expanded", String(!collapsed));
}
$("tray-toggle").addEventListener("click", toggleTray);
$("reset").addEventListener("click", () => { presets.value = ""; state.active?.resetView(); });
$("cine").addEventListener("click", () => state.active?.toggleCine());
$("help-toggle").addEventListener("click", () => $("help").showModal());

function toggleDocuments() {
  const panel = $("documents");
  if (!panel) return;
  const closed = panel.classList.toggle("closed");
  $("documents-toggle").setAttribute("aria-expanded", String(!closed));
}
$("documents-toggle")?.addEventListener("click", toggleDocuments);

$("download-iso")?.addEventListener("click", () => {
  if (!state.open) return setStatus("Open a study first");
  const link = document.createElement("a");
  link.href = studyUrl(state.open, "/iso");
  link.download = "";
  document.body.appendChild(link);
  link.click();
  link.remove();
});

const openSearch = bindSearch($("search"), async (uid) => {
  await refreshStudies();
  openStudy(uid);
});
$("search-open")?.addEventListener("click", () => openSearch?.());

function nextSeries(step) {
  const viewport = state.active;
  if (!viewport || !state.listing) return;
  const series = imageSeries(state.listing);
  if (!series.length) return;
  const current = series.findIndex((s) => s.seriesInstanceUID === viewport.series?.seriesInstanceUID);
  const next = series[(current + step + series.length) % series.length];
  viewport.show(state.open, next);
  markThumbnail(thumbnails, next.seriesInstanceUID);
}

document.addEventListener("keydown", (event) => {
  if (config.slides) return;  // the slide viewer has its own keys (slides.js)
  if (event.target.closest && event.target.closest("input, select, textarea, dialog, video")) return;
  if (event.altKey || event.metaKey) return;
  const viewport = state.active;
  const actions = {
    ArrowDown: () => viewport?.scroll(1), ArrowUp: () => viewport?.scroll(-1),
    PageDown: () => viewport?.scroll(10), PageUp: () => viewport?.scroll(-10),
    Home: () => viewport?.setIndex(0), End: () => viewport?.setIndex(Infinity),
    ArrowRight: () => nextSeries(1), ArrowLeft: () => nextSeries(-1),
    "+": () => viewport?.zoomBy(1.2), "=": () => viewport?.zoomBy(1.2), "-": () => viewport?.zoomBy(1 / 1.2),
    c: () => viewport?.toggleCine(), r: () => { presets.value = ""; viewport?.resetView(); },
    t: toggleTray, w: () => setTool("window"), p: () => setTool("pan"), z: () => setTool("zoom"),
    d: toggleDocuments, "/": () => openSearch?.(), "?": () => $("help").showModal(),
    "0": () => applyPreset(-1),
  };
  let action = actions[event.key] || actions[event.key.toLowerCase()];
  if (!action && /^[1-9]$/.test(event.key)) action = () => applyPreset(Number(event.key) - 1);
  if (event.ctrlKey && event.key !== "+" && event.key !== "-") return;
  if (!action) return;
  event.preventDefault();
  action();
});

// ---- start ------------------------------------------------------------------------------------

function start() {
  layoutGrid(1, 1);
  renderPatient();
  renderStudyList();
  // A pathology case: the slide viewer (slides.js) shows its slides; none of its studies is
  // opened here as images (a slide file has none, a DICOM slide's levels are not a stack).
  if (config.slides) return;
  if (config.monitor === "secondary") return openPriors();
  const mine = patientStudies();
  const first = mine.find((s) => s.purpose === "open") || (config.display === "studies" ? mine[0] : null);
  if (first) return openStudy(first.studyInstanceUID);
  if (!state.studies.length) {
    state.viewports[0].setMessage("Study not found", "error");
    state.viewports[0].root.dataset.state = "not-found";
    return;
  }
  state.viewports[0].setMessage("Select a study from the list");
}

start();
