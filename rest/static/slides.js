// The pathology slide viewer: the case's slides in a tray, OpenSeadragon fed by the session's
// DeepZoom endpoint with its navigator (overview), a scale bar and magnification presets from
// the slide's microns per pixel, the slide's colour profile (on from the start when the lab gave
// it a .cube), its label image (never in an anonymized session: the server refuses it and the
// page does not ask), its specimen/block/slide metadata, and the annotation layers
// (slide_layers.js). Everything goes through /ngv/slides, authorised by the session cookie; the
// slides and layers shown and the user they are saved as are the server's decision, not this
// page's. While a POST request's import is still running, the tray waits for its slides instead
// of saying there are none.

import { SlideLayers } from "./slide_layers.js";
import { imageZoomFor, nativeMagnification, presetsFor, scaleBar } from "./slide_measure.js";

const POLL_MS = 1500;

function element(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function loadOpenSeadragon() {
  if (window.OpenSeadragon) return Promise.resolve(window.OpenSeadragon);
  return new Promise((resolve, reject) => {
    const script = element("script", { src: "/ngv/vendor/openseadragon/openseadragon.min.js" });
    script.onload = () => resolve(window.OpenSeadragon);
    script.onerror = () => reject(new Error("OpenSeadragon could not be loaded"));
    document.head.append(script);
  });
}

function setStatus(text) {
  const status = document.getElementById("status");
  if (status) status.textContent = text;
}

class SlidePanel {
  constructor(root, tray) {
    this.root = root;
    this.tray = tray;
    this.slide = null;
    this.info = null;
    this.lut = false;
    this.shown = new Set();
    this.build();
  }

  setStatus(text) {
    setStatus(text);
  }

  build() {
    const tools = element("div", { class: "slide-tools", role: "toolbar", "aria-label": "Slide tools" });
    this.trayToggle = element("button", { type: "button", id: "slide-tray-toggle",
      "aria-expanded": String(!this.tray.collapsePreviews) }, "Slides");
    this.trayToggle.onclick = () => this.setTray(this.root.classList.contains("tray-collapsed"));
    this.lutButton = element("button", { type: "button", id: "slide-lut", "aria-pressed": "false",
      title: "Apply the slide's colour profile" }, "Colour profile");
    this.lutButton.onclick = () => this.setLut(!this.lut);
    this.magnifications = element("div", { class: "slide-mag", id: "slide-mag", role: "group",
      "aria-label": "Magnification" });
    this.zoomText = element("span", { class: "slide-zoom", id: "slide-zoom" });
    this.labelButton = element("button", { type: "button", id: "slide-label-toggle",
      "aria-pressed": "false", title: "The slide's label" }, "Label");
    this.labelButton.onclick = () => this.setLabel(this.labelPanel.hidden);
    this.layersButton = element("button", { type: "button", id: "slide-layers-toggle",
      "aria-pressed": "true", title: "Annotation layers" }, "Layers");
    this.layersButton.onclick = () => this.setLayerList(this.root.classList.contains("layers-closed"));
    tools.append(this.trayToggle, this.lutButton, this.magnifications, this.zoomText,
      this.labelButton, this.layersButton);
    this.meta = element("div", { class: "slide-meta", id: "slide-meta" });
    this.trayList = element("nav", { class: "slide-tray", id: "slide-tray", "aria-label": "Slides" });
    this.view = element("div", { class: "slide-view" });
    this.osdHost = element("div", { class: "slide-osd", id: "slide-osd" });
    this.svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.svg.setAttribute("class", "slide-overlay");
    this.svg.id = "slide-overlay";
    this.scale = element("div", { class: "slide-scale", id: "slide-scale", "aria-label": "Scale" });
    this.scaleBar = element("div", { class: "slide-scale-bar" });
    this.scaleText = element("span", { class: "slide-scale-text" });
    this.scale.append(this.scaleBar, this.scaleText);
    this.labelPanel = element("figure", { class: "slide-label", id: "slide-label" });
    this.labelPanel.hidden = true;
    this.message = element("div", { class: "slide-message", id: "slide-message" });
    this.view.append(this.osdHost, this.svg, this.scale, this.labelPanel, this.message);
    const side = element("div", { class: "slide-side" });
    this.root.append(tools, this.trayList, this.view, side);
    this.layers = new SlideLayers(this, tools, side);
    tools.append(this.meta);
    this.setTray(!this.tray.collapsePreviews);
  }

  setTray(open) {
    this.root.classList.toggle("tray-collapsed", !open);
    this.trayToggle.setAttribute("aria-expanded", String(open));
  }

  setLayerList(open) {
    this.root.classList.toggle("layers-closed", !open);
    this.layersButton.setAttribute("aria-pressed", String(open));
  }

  setMessage(text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  async start(OSD) {
    this.OSD = OSD;
    this.viewer = OSD({
      element: this.osdHost, drawer: "canvas", showNavigationControl: false,
      showNavigator: true, navigatorPosition: "BOTTOM_RIGHT", navigatorAutoFade: false,
      navigatorSizeRatio: 0.18, crossOriginPolicy: false, loadTilesWithAjax: false,
      immediateRender: false, gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: false },
    });
    for (const event of ["animation", "open", "resize", "update-viewport"]) {
      this.viewer.addHandler(event, () => this.redraw());
    }
    await this.addSlides(this.tray.slides);
  }

  // New slides of the tray (all at first, then what an import brought); the first opens.
  async addSlides(slides) {
    for (const slide of slides) {
      const cid = slide.containerIdentifier;
      if (this.shown.has(cid)) continue;
      this.shown.add(cid);
      const button = element("button", { type: "button", "data-slide": cid });
      const thumb = element("img", { alt: "", loading: "lazy",
        src: `/ngv/slides/${encodeURIComponent(cid)}/thumbnail.jpeg?size=160` });
      const label = slide.slideIdentifier || slide.slideAlias || cid;
      button.append(thumb, element("span", {}, label), element("small", {}, slide.slideStainCode || ""));
      button.onclick = () => this.open(slide);
      this.trayList.append(button);
    }
    this.root.dataset.slides = String(this.shown.size);
    if (this.slide || !slides.length) return;
    const first = slides.find((s) => s.containerIdentifier === this.tray.selected) || slides[0];
    await this.open(first);
  }

  async open(slide) {
    this.slide = slide;
    this.setMessage("");
    const cid = encodeURIComponent(slide.containerIdentifier);
    for (const button of this.trayList.querySelectorAll("button")) {
      button.classList.toggle("open", button.dataset.slide === slide.containerIdentifier);
    }
    this.root.dataset.slide = slide.containerIdentifier;
    this.root.dataset.state = "loading";
    this.info = await getJSON(`/ngv/slides/${cid}`);
    this.mpp = this.info.mppX && this.info.mppY ? (this.info.mppX + this.info.mppY) / 2 : null;
    this.lutButton.hidden = !this.info.colourManaged;
    this.showMetadata(slide);
    this.showMagnifications();
    this.showLabel();
    // The lab's .cube is what the slide is meant to look like: on unless the reader turns it off.
    this.lut = Boolean(this.info.cube && this.info.colourManaged);
    this.lutButton.setAttribute("aria-pressed", String(this.lut));
    this.openTiles(false);
    await this.layers.load();
  }

  showMetadata(slide) {
    this.meta.replaceChildren();
    const fields = [["Specimen", slide.specimenIdentifier || slide.specimenAlias],
      ["Block", slide.blockIdentifier || slide.blockAlias],
      ["Slide", slide.slideIdentifier || slide.slideAlias || slide.containerIdentifier],
      ["Stain", slide.slideStainCode], ["Site", slide.specimenBodySite]];
    for (const [name, value] of fields) {
      if (!value) continue;
      const span = element("span", { "data-field": name.toLowerCase() }, `${name} `);
      span.append(element("b", {}, value));
      this.meta.append(span);
    }
  }

  // ---- magnification and scale ----------------------------------------------------------

  showMagnifications() {
    this.magnifications.replaceChildren();
    for (const magnification of presetsFor(this.mpp)) {
      const button = element("button", { type: "button", "data-mag": String(magnification),
        title: `Show at ${magnification}x` }, `${magnification}x`);
      button.onclick = () => this.zoomToMagnification(magnification);
      this.magnifications.append(button);
    }
  }

  zoomToMagnification(magnification) {
    const viewport = this.viewer.viewport;
    viewport.zoomTo(viewport.imageToViewportZoom(imageZoomFor(magnification, this.mpp)));
  }

  // Screen pixels per image pixel, now (during an animation too).
  imageZoom() {
    const viewport = this.viewer.viewport;
    return viewport.viewportToImageZoom(viewport.getZoom(true));
  }

  showScale() {
    if (!this.viewer.world.getItemCount()) return;
    const zoom = this.imageZoom();
    const native = nativeMagnification(this.mpp);
    this.scale.hidden = !native;
    if (!native) {
      this.zoomText.textContent = `${Math.round(zoom * 100)}%`;
      return;
    }
    const magnification = native * zoom;
    this.root.dataset.magnification = magnification.toFixed(3);
    this.zoomText.textContent = `${magnification >= 10 ? magnification.toFixed(0) : magnification.toFixed(1)}x`;
    const bar = scaleBar(this.mpp / zoom);
    this.scaleBar.style.width = `${bar.pixels}px`;
    this.scaleText.textContent = bar.text;
    this.scale.dataset.microns = String(bar.microns);
    for (const button of this.magnifications.children) {
      const preset = Number(button.dataset.mag);
      button.setAttribute("aria-pressed", String(Math.abs(preset - magnification) / preset < 0.02));
    }
  }

  redraw() {
    this.showScale();
    this.layers.draw();
  }

  // ---- label, colour profile, tiles -----------------------------------------------------

  showLabel() {
    const has = this.info.associatedImages.includes("label");
    this.labelButton.hidden = !has;
    this.labelPanel.replaceChildren();
    if (!has) return this.setLabel(false);
    const cid = encodeURIComponent(this.slide.containerIdentifier);
    // Only fetched when shown: the page asks for nothing it does not display.
    this.labelPanel.dataset.src = `/ngv/slides/${cid}/label.jpeg`;
    return this.setLabel(!this.labelPanel.hidden);
  }

  setLabel(open) {
    this.labelPanel.hidden = !open;
    this.labelButton.setAttribute("aria-pressed", String(open));
    if (open && !this.labelPanel.querySelector("img")) {
      this.labelPanel.append(element("img", { id: "slide-label-image", alt: "Slide label",
        src: this.labelPanel.dataset.src }), element("figcaption", {}, "Label"));
    }
  }

  openTiles(keepView) {
    const cid = encodeURIComponent(this.slide.containerIdentifier);
    // OpenSeadragon carries the descriptor's query string onto every tile URL.
    const url = `/ngv/slides/${cid}/dz.dzi${this.lut ? "?lut=1" : ""}`;
    const view = keepView && this.viewer.world.getItemCount()
      ? { center: this.viewer.viewport.getCenter(), zoom: this.viewer.viewport.getZoom() } : null;
    this.root.dataset.state = "loading";
    this.root.dataset.lut = this.lut ? "1" : "0";
    this.viewer.addOnceHandler("open", () => {
      if (view) {
        this.viewer.viewport.zoomTo(view.zoom, null, true);
        this.viewer.viewport.panTo(view.center, true);
      }
      const item = this.viewer.world.getItemAt(0);
      const ready = () => { this.root.dataset.state = "ready"; };
      if (item.getFullyLoaded()) ready();
      else item.addOnceHandler("fully-loaded-change", (e) => { if (e.fullyLoaded) ready(); });
    });
    this.viewer.open(url);
  }

  setLut(on) {
    this.lut = on;
    this.lutButton.setAttribute("aria-pressed", String(on));
    this.openTiles(true);
  }
}

// The case's accession numbers beside the patient (none in an anonymized session).
function showCase(accessions) {
  const node = document.getElementById("case");
  if (!node) return;
  node.replaceChildren();
  node.hidden = !accessions.length;
  if (!accessions.length) return;
  node.append(element("span", { class: "patient-field" }, "Accession "));
  node.firstChild.append(element("b", {}, accessions.join(", ")));
}

// DICOM DA (YYYYMMDD) as YYYY-MM-DD; anything else as it is.
function formatDate(value) {
  const text = value || "";
  return /^\d{8}$/.test(text) ? `${text.slice(0, 4)}-${text.slice(4, 6)}-${text.slice(6, 8)}` : text;
}

// Once an import is over the patient is known (a slide file's is the request's): the banner
// is written again from the tray's patient. An anonymized session's has no identifier at all.
function showPatient(patient) {
  const banner = document.getElementById("patient");
  if (!banner || !patient) return;
  if (banner.dataset.anonymized === "true") {
    banner.replaceChildren(element("span", { class: "patient-name" }, "Anonymized patient"));
    return;
  }
  const name = patient.received ? (patient.name || "Unnamed patient") : "Unknown patient";
  const nodes = [element("span", { class: "patient-name" }, name)];
  for (const [title, value] of [["ID", patient.patientID], ["Born", formatDate(patient.birthDate)],
    ["Sex", patient.sex]]) {
    if (!value) continue;
    const field = element("span", { class: "patient-field" }, `${title} `);
    field.append(element("b", {}, value));
    nodes.push(field);
  }
  banner.replaceChildren(...nodes);
}

async function follow(panel) {
  let tray = panel.tray;
  while (tray.pending) {
    await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
    tray = await getJSON("/ngv/slides");
    showCase(tray.accessionNumbers || []);
    await panel.addSlides(tray.slides);
    if (!tray.pending) showPatient(tray.patient);
  }
  if (!panel.shown.size) panel.setMessage("This case has no slides.");
}

async function main() {
  const root = document.getElementById("slide-panel");
  if (!root) return;
  let tray;
  try {
    tray = await getJSON("/ngv/slides");
  } catch (error) {
    setStatus(`Slide viewer: ${error.message}`);
    return;
  }
  showCase(tray.accessionNumbers || []);
  const panel = new SlidePanel(root, tray);
  window.slidePanel = panel;
  if (tray.pending && !tray.slides.length) panel.setMessage("Importing the slides…");
  await panel.start(await loadOpenSeadragon());
  await follow(panel);
}

main().catch((error) => setStatus(`Slide viewer: ${error.message}`));
