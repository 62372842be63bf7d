// The pathology slide panel: the case's slides in a tray, OpenSeadragon fed by the session's
// DeepZoom endpoint, a toggle for the slide's colour profile (lut=1), its specimen/block/slide
// metadata, and the annotation layers drawn over it in SVG with simple drawing tools.
// Everything goes through /ngv/slides, authorised by the session cookie; the layers shown and
// the user they are saved as are the server's decision, not this page's.

const SVG = "http://www.w3.org/2000/svg";
const TOOLS = ["pan", "point", "line", "polygon", "rectangle", "ellipse"];

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

class SlidePanel {
  constructor(root, tray) {
    this.root = root;
    this.tray = tray;
    this.slide = null;
    this.lut = false;
    this.tool = "pan";
    this.layers = [];
    this.draft = [];
    this.build();
  }

  build() {
    const tools = element("div", { class: "slide-tools", role: "toolbar", "aria-label": "Slide tools" });
    this.trayToggle = element("button", { type: "button", id: "slide-tray-toggle",
      "aria-expanded": String(!this.tray.collapsePreviews) }, "Slides");
    this.trayToggle.onclick = () => this.setTray(this.root.classList.contains("tray-collapsed"));
    this.lutButton = element("button", { type: "button", id: "slide-lut", "aria-pressed": "false",
      title: "Apply the slide's colour profile" }, "Colour profile");
    this.lutButton.onclick = () => this.setLut(!this.lut);
    tools.append(this.trayToggle, this.lutButton);
    this.toolButtons = {};
    for (const name of TOOLS) {
      const button = element("button", { type: "button", class: "tool", id: `slide-tool-${name}`,
        "aria-pressed": String(name === "pan") }, name[0].toUpperCase() + name.slice(1));
      button.onclick = () => this.setTool(name);
      this.toolButtons[name] = button;
      tools.append(button);
    }
    this.layerName = element("input", { id: "slide-layer", maxlength: "64", size: "12",
      value: "Annotations", "aria-label": "Layer name" });
    tools.append(this.layerName);
    this.meta = element("div", { class: "slide-meta", id: "slide-meta" });
    tools.append(this.meta);
    this.trayList = element("nav", { class: "slide-tray", id: "slide-tray", "aria-label": "Slides" });
    this.view = element("div", { class: "slide-view" });
    this.osdHost = element("div", { class: "slide-osd", id: "slide-osd" });
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("class", "slide-overlay");
    this.svg.id = "slide-overlay";
    this.view.append(this.osdHost, this.svg);
    this.root.append(tools, this.trayList, this.view);
    this.setTray(!this.tray.collapsePreviews);
  }

  setTray(open) {
    this.root.classList.toggle("tray-collapsed", !open);
    this.trayToggle.setAttribute("aria-expanded", String(open));
  }

  async start(OSD) {
    this.OSD = OSD;
    this.viewer = OSD({
      element: this.osdHost, drawer: "canvas", showNavigationControl: false,
      crossOriginPolicy: false, loadTilesWithAjax: false, immediateRender: false,
      gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: false },
    });
    for (const event of ["animation", "open", "resize", "update-viewport"]) {
      this.viewer.addHandler(event, () => this.draw());
    }
    this.bindDrawing();
    for (const slide of this.tray.slides) {
      const cid = slide.containerIdentifier;
      const button = element("button", { type: "button", "data-slide": cid });
      const thumb = element("img", { alt: "", loading: "lazy",
        src: `/ngv/slides/${encodeURIComponent(cid)}/thumbnail.jpeg?size=160` });
      const label = slide.slideIdentifier || slide.slideAlias || cid;
      button.append(thumb, element("span", {}, label), element("small", {}, slide.slideStainCode || ""));
      button.onclick = () => this.open(slide);
      this.trayList.append(button);
    }
    const first = this.tray.slides.find((s) => s.containerIdentifier === this.tray.selected)
      || this.tray.slides[0];
    if (first) await this.open(first);
  }

  async open(slide) {
    this.slide = slide;
    const cid = encodeURIComponent(slide.containerIdentifier);
    for (const button of this.trayList.querySelectorAll("button")) {
      button.classList.toggle("open", button.dataset.slide === slide.containerIdentifier);
    }
    this.root.dataset.slide = slide.containerIdentifier;
    this.info = await getJSON(`/ngv/slides/${cid}`);
    this.lutButton.hidden = !this.info.colourManaged;
    this.showMetadata(slide);
    this.lut = false;
    this.openTiles(false);
    await this.loadLayers();
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

  setTool(name) {
    this.tool = name;
    this.draft = [];
    for (const [key, button] of Object.entries(this.toolButtons)) {
      button.setAttribute("aria-pressed", String(key === name));
    }
    this.svg.classList.toggle("drawing", name !== "pan");
    this.viewer.setMouseNavEnabled(name === "pan");
    this.draw();
  }

  async loadLayers() {
    const cid = encodeURIComponent(this.slide.containerIdentifier);
    const body = await getJSON(`/ngv/slides/${cid}/layers`);
    this.layers = body.layers;
    this.root.dataset.layers = String(this.layers.length);
    this.root.dataset.shapes = String(this.layers.reduce((n, l) => n + l.shapes.length, 0));
    this.draw();
  }

  ownLayer() {
    const name = this.layerName.value.trim() || "Annotations";
    let layer = this.layers.find((l) => l.owner === this.tray.user && l.name === name);
    if (!layer) {
      layer = { name, owner: this.tray.user, shapes: [] };
      this.layers.push(layer);
    }
    return layer;
  }

  async addShape(shape) {
    const layer = this.ownLayer();
    const shapes = [...layer.shapes, shape];
    const cid = encodeURIComponent(this.slide.containerIdentifier);
    this.root.dataset.saving = "1";
    const response = await fetch(`/ngv/slides/${cid}/layers/${encodeURIComponent(layer.name)}`, {
      method: "PUT", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ shapes }),
    });
    delete this.root.dataset.saving;
    if (!response.ok) {
      const status = document.getElementById("status");
      if (status) status.textContent = `The shape was not saved (${response.status})`;
      return;
    }
    await this.loadLayers();
  }

  imagePoint(event) {
    const rect = this.svg.getBoundingClientRect();
    const pixel = new this.OSD.Point(event.clientX - rect.left, event.clientY - rect.top);
    const point = this.viewer.viewport.viewerElementToImageCoordinates(pixel);
    const clamp = (v, max) => Math.min(Math.max(Math.round(v), 0), max - 1);
    return [clamp(point.x, this.info.width), clamp(point.y, this.info.height)];
  }

  bindDrawing() {
    let start = null;
    this.svg.addEventListener("pointerdown", (event) => {
      if (this.tool === "pan" || event.button !== 0) return;
      event.preventDefault();
      const point = this.imagePoint(event);
      if (this.tool === "point") this.addShape({ type: "point", points: [point] });
      else if (this.tool === "rectangle" || this.tool === "ellipse") {
        start = point;
        this.draft = [point, point];
        this.svg.setPointerCapture(event.pointerId);
      } else this.draft.push(point);
      this.draw();
    });
    this.svg.addEventListener("pointermove", (event) => {
      if (start) { this.draft = [start, this.imagePoint(event)]; this.draw(); }
    });
    this.svg.addEventListener("pointerup", (event) => {
      if (!start) return;
      const end = this.imagePoint(event);
      const type = this.tool;
      this.draft = [];
      if (end[0] !== start[0] && end[1] !== start[1]) this.addShape({ type, points: [start, end] });
      start = null;
      this.draw();
    });
    // Lines and polygons: click their points, then double-click or Enter to finish.
    const finish = () => {
      const needed = this.tool === "polygon" ? 3 : 2;
      const points = this.draft;
      this.draft = [];
      if (points.length >= needed) this.addShape({ type: this.tool, points });
      this.draw();
    };
    this.svg.addEventListener("dblclick", (event) => { event.preventDefault(); finish(); });
    document.addEventListener("keydown", (event) => {
      if (this.root.hidden || !["line", "polygon"].includes(this.tool)) return;
      if (event.key === "Enter") finish();
      if (event.key === "Escape") { this.draft = []; this.draw(); }
    });
  }

  screen(point) {
    const p = this.viewer.viewport.imageToViewerElementCoordinates(new this.OSD.Point(point[0], point[1]));
    return [p.x, p.y];
  }

  shapeNode(shape, className) {
    const pts = shape.points.map((p) => this.screen(p));
    let node;
    if (shape.type === "point") {
      node = document.createElementNS(SVG, "circle");
      node.setAttribute("cx", pts[0][0]); node.setAttribute("cy", pts[0][1]); node.setAttribute("r", 5);
    } else if (shape.type === "ellipse" && pts.length === 4) {
      // Stored as DICOM draws it: the two axes' end points.
      const [a, b, c, d] = pts;
      node = document.createElementNS(SVG, "ellipse");
      node.setAttribute("cx", (a[0] + b[0]) / 2); node.setAttribute("cy", (a[1] + b[1]) / 2);
      node.setAttribute("rx", Math.hypot(b[0] - a[0], b[1] - a[1]) / 2);
      node.setAttribute("ry", Math.hypot(d[0] - c[0], d[1] - c[1]) / 2);
      const angle = Math.atan2(b[1] - a[1], b[0] - a[0]) * 180 / Math.PI;
      node.setAttribute("transform", `rotate(${angle} ${(a[0] + b[0]) / 2} ${(a[1] + b[1]) / 2})`);
    } else if (shape.type === "ellipse" || (shape.type === "rectangle" && pts.length === 2)) {
      const [[x0, y0], [x1, y1]] = pts;
      node = document.createElementNS(SVG, shape.type === "ellipse" ? "ellipse" : "rect");
      if (shape.type === "ellipse") {
        node.setAttribute("cx", (x0 + x1) / 2); node.setAttribute("cy", (y0 + y1) / 2);
        node.setAttribute("rx", Math.abs(x1 - x0) / 2); node.setAttribute("ry", Math.abs(y1 - y0) / 2);
      } else {
        node.setAttribute("x", Math.min(x0, x1)); node.setAttribute("y", Math.min(y0, y1));
        node.setAttribute("width", Math.abs(x1 - x0)); node.setAttribute("height", Math.abs(y1 - y0));
      }
    } else {
      node = document.createElementNS(SVG, shape.type === "line" ? "polyline" : "polygon");
      node.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
    }
    node.setAttribute("class", `${className} ${shape.type}`);
    node.dataset.type = shape.type;
    return node;
  }

  draw() {
    if (!this.viewer || !this.info) return;
    const nodes = [];
    for (const layer of this.layers) {
      const group = document.createElementNS(SVG, "g");
      group.dataset.layer = layer.name;
      group.dataset.owner = layer.owner;
      const mine = layer.owner === this.tray.user;
      for (const shape of layer.shapes) group.append(this.shapeNode(shape, mine ? "shape" : "shape other"));
      nodes.push(group);
    }
    if (this.draft.length) {
      const type = ["rectangle", "ellipse"].includes(this.tool) ? this.tool : "line";
      nodes.push(this.shapeNode({ type, points: this.draft }, "draft"));
    }
    this.svg.replaceChildren(...nodes);
  }
}

async function main() {
  const root = document.getElementById("slide-panel");
  if (!root) return;
  let tray;
  try {
    tray = await getJSON("/ngv/slides");
  } catch {
    return;
  }
  if (!tray.slides.length) return;
  root.hidden = false;
  const panel = new SlidePanel(root, tray);
  await panel.start(await loadOpenSeadragon());
  window.slidePanel = panel;
}

main().catch((error) => {
  const status = document.getElementById("status");
  if (status) status.textContent = `Slide viewer: ${error.message}`;
});
