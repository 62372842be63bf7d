// Annotation layers over a slide: drawn in SVG above OpenSeadragon, listed in a panel with each
// shape's length (µm) or area (mm²), and edited in place: the Edit tool selects one of the
// user's own shapes, drags its points or the whole shape, and Delete removes it; a whole layer
// of one's own is deleted from the list. Every change is saved at once (PUT of the layer) as the
// session's user. A session with hideLayers, or whose role does not allow layers, sees no
// layer, so drawing is off there with a message: saving into a layer it cannot see would
// replace the shapes already in it. A role without annotations sees the layers and draws
// nothing. The server refuses both; the page only does not offer what would be refused.

import { measureText } from "./slide_measure.js";

const SVG = "http://www.w3.org/2000/svg";
const DRAWING = ["point", "line", "polygon", "rectangle", "ellipse"];
export const TOOLS = ["pan", "edit", ...DRAWING];
const HIDDEN_MESSAGE = "Drawing is off: this session hides annotation layers.";
const READ_ONLY_MESSAGE = "Drawing is off: this session's role does not allow annotations.";

function element(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function svgNode(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

const key = (layer) => `${layer.owner}\n${layer.name}`;

// The two points an axis-aligned rectangle or ellipse is edited by: its box's corners.
function boxOf(points) {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  return [[Math.min(...xs), Math.min(...ys)], [Math.max(...xs), Math.max(...ys)]];
}

function editablePoints(shape) {
  return ["rectangle", "ellipse"].includes(shape.type) && shape.points.length === 4
    ? boxOf(shape.points) : shape.points.map((p) => [...p]);
}

export class SlideLayers {
  constructor(panel, toolbar, listHost) {
    this.panel = panel;
    this.tray = panel.tray;
    this.svg = panel.svg;
    this.layers = [];
    this.hiddenLayers = new Set();
    this.tool = "pan";
    this.draft = [];
    this.selected = null;  // {layer key, index}
    this.drag = null;
    // Saves not yet answered, and the chain they are sent through (one at a time).
    this.unsaved = 0;
    this.saves = Promise.resolve();
    // The tray's features are the role's permissions less what the token hid.
    this.hidden = !this.tray.features.layers;
    this.locked = this.hidden || !this.tray.features.annotations;
    this.lockMessage = this.hidden ? HIDDEN_MESSAGE : READ_ONLY_MESSAGE;
    this.buildTools(toolbar);
    this.buildList(listHost);
    this.bind();
  }

  // ---- the toolbar and the list ---------------------------------------------------------

  buildTools(toolbar) {
    this.toolButtons = {};
    for (const name of TOOLS) {
      const button = element("button", { type: "button", class: "tool", id: `slide-tool-${name}`,
        "aria-pressed": String(name === "pan") }, name[0].toUpperCase() + name.slice(1));
      button.onclick = () => this.setTool(name);
      if (this.locked && name !== "pan") {
        button.disabled = true;
        button.title = this.lockMessage;
      }
      this.toolButtons[name] = button;
      toolbar.append(button);
    }
    this.layerName = element("input", { id: "slide-layer", maxlength: "64", size: "12",
      value: "Annotations", "aria-label": "Layer to draw in" });
    this.layerName.disabled = this.locked;
    this.deleteButton = element("button", { type: "button", id: "slide-delete-shape",
      title: "Delete the selected shape (Delete)" }, "Delete shape");
    this.deleteButton.hidden = true;
    this.deleteButton.onclick = () => this.deleteSelected();
    toolbar.append(this.layerName, this.deleteButton);
    if (this.locked) {
      toolbar.append(element("span", { class: "slide-note", id: "slide-draw-note", role: "note" },
        this.lockMessage));
    }
  }

  buildList(host) {
    this.list = element("aside", { class: "slide-layers", id: "slide-layers",
      "aria-label": "Annotation layers" });
    host.append(this.list);
  }

  renderList() {
    const heading = element("h2", {}, "Layers");
    const nodes = [heading];
    if (this.hidden) nodes.push(element("p", { class: "slide-note" }, "Annotation layers are hidden in this session."));
    else if (!this.layers.length) {
      nodes.push(element("p", { class: "slide-note" },
        this.locked ? "No layers on this slide." : "No layers yet: pick a tool and draw."));
    }
    const mpp = { x: this.panel.info.mppX, y: this.panel.info.mppY };
    for (const layer of this.layers) {
      const mine = layer.owner === this.tray.user;
      const item = element("section", { class: "slide-layer", "data-layer": layer.name,
        "data-owner": layer.owner });
      const head = element("div", { class: "slide-layer-head" });
      const visible = element("input", { type: "checkbox", class: "layer-visible",
        "aria-label": `Show ${layer.name}` });
      visible.checked = !this.hiddenLayers.has(key(layer));
      visible.onchange = () => {
        if (visible.checked) this.hiddenLayers.delete(key(layer));
        else this.hiddenLayers.add(key(layer));
        this.draw();
      };
      const name = element("button", { type: "button", class: "layer-name",
        title: mine ? "Draw in this layer" : `${layer.owner}'s layer` }, layer.name);
      name.disabled = !mine || this.locked;
      name.onclick = () => { this.layerName.value = layer.name; };
      head.append(visible, name, element("small", {}, mine ? "yours" : layer.owner));
      if (mine && !this.locked) {
        const remove = element("button", { type: "button", class: "layer-delete",
          title: `Delete the layer ${layer.name}` }, "Delete");
        remove.onclick = () => this.deleteLayer(layer);
        head.append(remove);
      }
      const shapes = element("ol", { class: "slide-shapes" });
      layer.shapes.forEach((shape, index) => {
        const row = element("li", { "data-index": String(index), "data-type": shape.type });
        const selected = this.selected && this.selected.key === key(layer) && this.selected.index === index;
        row.classList.toggle("selected", Boolean(selected));
        row.append(element("span", { class: "shape-type" }, shape.type),
          element("span", { class: "measure" }, measureText(shape, mpp)));
        if (mine && !this.locked) row.onclick = () => { this.select(layer, index); this.setTool("edit", true); };
        shapes.append(row);
      });
      item.append(head, shapes);
      nodes.push(item);
    }
    this.list.replaceChildren(...nodes);
  }

  // ---- tools ---------------------------------------------------------------------------

  setTool(name, keepSelection = false) {
    if (this.locked && name !== "pan") return;
    this.tool = name;
    this.draft = [];
    if (!keepSelection || name !== "edit") this.selected = null;
    for (const [tool, button] of Object.entries(this.toolButtons)) {
      button.setAttribute("aria-pressed", String(tool === name));
    }
    this.svg.classList.toggle("drawing", DRAWING.includes(name));
    this.svg.classList.toggle("editing", name === "edit");
    this.panel.viewer.setMouseNavEnabled(name === "pan" || name === "edit");
    this.update();
  }

  select(layer, index) {
    this.selected = layer ? { key: key(layer), index } : null;
    this.update();
  }

  selectedShape() {
    if (!this.selected) return null;
    const layer = this.layers.find((l) => key(l) === this.selected.key);
    const shape = layer && layer.shapes[this.selected.index];
    return shape ? { layer, shape } : null;
  }

  update() {
    this.deleteButton.hidden = !this.selectedShape();
    this.renderList();
    this.draw();
  }

  // ---- server --------------------------------------------------------------------------

  url(name) {
    const cid = encodeURIComponent(this.panel.slide.containerIdentifier);
    return `/ngv/slides/${cid}/layers` + (name === undefined ? "" : `/${encodeURIComponent(name)}`);
  }

  async load() {
    const response = await fetch(this.url(), { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(`annotation layers: ${response.status}`);
    const body = await response.json();
    // A save made meanwhile is not in what was read: its own reading follows.
    if (this.unsaved > 0) return;
    this.layers = body.layers;
    const root = this.panel.root;
    root.dataset.layers = String(this.layers.length);
    root.dataset.shapes = String(this.layers.reduce((n, l) => n + l.shapes.length, 0));
    if (!this.selectedShape()) this.selected = null;
    this.update();
  }

  // A save of one's own layer: the layer as the edit leaves it is shown and built on at once,
  // so that an edit made while an earlier one is being saved works on it (it worked on the
  // shapes from before, and its save undid the earlier edit); the saves reach the server one
  // after the other, in the order they were made, and the layers are read back once none is
  // left. "saving" lasts until then.
  send(method, name, body) {
    const layer = this.layers.find((l) => l.owner === this.tray.user && l.name === name);
    if (method === "DELETE") this.layers = this.layers.filter((l) => l !== layer);
    else if (layer) layer.shapes = body.shapes;
    if (!this.selectedShape()) this.selected = null;
    this.update();
    this.panel.root.dataset.saving = "1";
    this.unsaved += 1;
    this.saves = this.saves.then(() => this.save(method, name, body));
    return this.saves;
  }

  async save(method, name, body) {
    try {
      const response = await fetch(this.url(name), {
        method, credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (!response.ok) {
        let reason = String(response.status);
        try { reason = (await response.json()).error || reason; } catch { /* not JSON */ }
        this.panel.setStatus(`The layer was not saved: ${reason}`);
      }
    } catch (error) {
      this.panel.setStatus(`The layer was not saved: ${error.message}`);
    }
    this.unsaved -= 1;
    if (this.unsaved > 0) return;
    try {
      await this.load();
    } catch (error) {
      this.panel.setStatus(`The layers could not be read back: ${error.message}`);
    }
    if (this.unsaved === 0) delete this.panel.root.dataset.saving;
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

  addShape(shape) {
    const layer = this.ownLayer();
    this.hiddenLayers.delete(key(layer));
    return this.send("PUT", layer.name, { shapes: [...layer.shapes, shape] });
  }

  replaceShape(layer, index, shape) {
    const shapes = layer.shapes.map((s, i) => (i === index ? shape : s));
    return this.send("PUT", layer.name, { shapes });
  }

  deleteSelected() {
    const found = this.selectedShape();
    if (!found) return null;
    const { layer } = found;
    const shapes = layer.shapes.filter((_, i) => i !== this.selected.index);
    this.selected = null;
    // The last shape takes its layer along: an empty layer is nothing to keep.
    return shapes.length ? this.send("PUT", layer.name, { shapes }) : this.send("DELETE", layer.name);
  }

  deleteLayer(layer) {
    if (this.selected && this.selected.key === key(layer)) this.selected = null;
    return this.send("DELETE", layer.name);
  }

  // ---- pointer -------------------------------------------------------------------------

  imagePoint(event) {
    const rect = this.svg.getBoundingClientRect();
    const OSD = this.panel.OSD;
    const pixel = new OSD.Point(event.clientX - rect.left, event.clientY - rect.top);
    const point = this.panel.viewer.viewport.viewerElementToImageCoordinates(pixel);
    const info = this.panel.info;
    const clamp = (v, max) => Math.min(Math.max(Math.round(v), 0), max - 1);
    return [clamp(point.x, info.width), clamp(point.y, info.height)];
  }

  bind() {
    let start = null;
    this.svg.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      if (this.tool === "edit") return this.editDown(event);
      if (!DRAWING.includes(this.tool)) return;
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
      if (this.drag) return this.editMove(event);
      if (start) { this.draft = [start, this.imagePoint(event)]; this.draw(); }
    });
    this.svg.addEventListener("pointerup", (event) => {
      if (this.drag) return this.editUp(event);
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
    this.svg.addEventListener("dblclick", (event) => {
      if (!["line", "polygon"].includes(this.tool)) return;
      event.preventDefault();
      finish();
    });
    document.addEventListener("keydown", (event) => {
      if (this.panel.root.hidden || (event.target.closest && event.target.closest("input, select, textarea"))) return;
      if (["line", "polygon"].includes(this.tool) && event.key === "Enter") finish();
      if ((event.key === "Delete" || event.key === "Backspace") && this.selectedShape()) {
        event.preventDefault();
        this.deleteSelected();
      }
      if (event.key === "Escape") { this.draft = []; this.select(null); }
    });
  }

  // Edit: a press on a handle drags that point, on the selected shape moves it whole, on
  // another shape of one's own selects it, elsewhere pans (OpenSeadragon has the event).
  editDown(event) {
    const target = event.target;
    const found = this.selectedShape();
    let mode = null;
    if (target.dataset && target.dataset.handle !== undefined && found) mode = Number(target.dataset.handle);
    else if (target.dataset && target.dataset.layerKey !== undefined) {
      const layer = this.layers.find((l) => key(l) === target.dataset.layerKey);
      const index = Number(target.dataset.index);
      if (!found || found.layer !== layer || this.selected.index !== index) this.select(layer, index);
      mode = "move";
    } else {
      if (found) this.select(null);
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    const { layer, shape } = this.selectedShape();
    this.drag = { layer, index: this.selected.index, mode, from: this.imagePoint(event),
      type: shape.type, points: editablePoints(shape), moved: false };
    this.svg.classList.add("dragging");
    this.svg.setPointerCapture(event.pointerId);
  }

  editMove(event) {
    const drag = this.drag;
    const point = this.imagePoint(event);
    const info = this.panel.info;
    if (drag.mode === "move") {
      const dx = point[0] - drag.from[0];
      const dy = point[1] - drag.from[1];
      const original = editablePoints(drag.layer.shapes[drag.index]);
      drag.points = original.map(([x, y]) => [Math.min(Math.max(x + dx, 0), info.width - 1),
        Math.min(Math.max(y + dy, 0), info.height - 1)]);
    } else {
      drag.points[drag.mode] = point;
    }
    drag.moved = true;
    this.draw();
  }

  editUp(event) {
    const drag = this.drag;
    this.drag = null;
    this.svg.classList.remove("dragging");
    this.svg.releasePointerCapture(event.pointerId);
    if (!drag.moved) return this.draw();
    const box = ["rectangle", "ellipse"].includes(drag.type);
    if (box && (drag.points[0][0] === drag.points[1][0] || drag.points[0][1] === drag.points[1][1])) {
      return this.draw();  // an empty box: the edit is dropped
    }
    return this.replaceShape(drag.layer, drag.index, { type: drag.type, points: drag.points });
  }

  // ---- drawing -------------------------------------------------------------------------

  screen(point) {
    const OSD = this.panel.OSD;
    const p = this.panel.viewer.viewport.imageToViewerElementCoordinates(new OSD.Point(point[0], point[1]));
    return [p.x, p.y];
  }

  shapeNode(shape, className) {
    const pts = shape.points.map((p) => this.screen(p));
    let node;
    if (shape.type === "point") {
      node = svgNode("circle", { cx: pts[0][0], cy: pts[0][1], r: 5 });
    } else if (shape.type === "ellipse" && pts.length === 4) {
      // Stored as DICOM draws it: the two axes' end points.
      const [a, b, c, d] = pts;
      const cx = (a[0] + b[0]) / 2;
      const cy = (a[1] + b[1]) / 2;
      const angle = Math.atan2(b[1] - a[1], b[0] - a[0]) * 180 / Math.PI;
      node = svgNode("ellipse", { cx, cy, rx: Math.hypot(b[0] - a[0], b[1] - a[1]) / 2,
        ry: Math.hypot(d[0] - c[0], d[1] - c[1]) / 2, transform: `rotate(${angle} ${cx} ${cy})` });
    } else if (shape.type === "ellipse" || (shape.type === "rectangle" && pts.length === 2)) {
      const [[x0, y0], [x1, y1]] = pts;
      node = shape.type === "ellipse"
        ? svgNode("ellipse", { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, rx: Math.abs(x1 - x0) / 2, ry: Math.abs(y1 - y0) / 2 })
        : svgNode("rect", { x: Math.min(x0, x1), y: Math.min(y0, y1), width: Math.abs(x1 - x0), height: Math.abs(y1 - y0) });
    } else {
      node = svgNode(shape.type === "line" ? "polyline" : "polygon",
        { points: pts.map((p) => p.join(",")).join(" ") });
    }
    node.setAttribute("class", `${className} ${shape.type}`);
    node.dataset.type = shape.type;
    return node;
  }

  // The measurement written beside a shape, at its right-most point.
  labelNode(shape, mpp) {
    const text = measureText(shape, mpp);
    if (!text) return null;
    const pts = shape.points.map((p) => this.screen(p));
    const right = pts.reduce((best, p) => (p[0] > best[0] ? p : best), pts[0]);
    const node = svgNode("text", { x: right[0] + 6, y: right[1], class: "measure" });
    node.textContent = text;
    return node;
  }

  draw() {
    if (!this.panel.viewer || !this.panel.info) return;
    const mpp = { x: this.panel.info.mppX, y: this.panel.info.mppY };
    const nodes = [];
    for (const layer of this.layers) {
      const group = svgNode("g");
      group.dataset.layer = layer.name;
      group.dataset.owner = layer.owner;
      group.classList.toggle("hidden", this.hiddenLayers.has(key(layer)));
      const mine = layer.owner === this.tray.user;
      layer.shapes.forEach((stored, index) => {
        const dragged = this.drag && this.drag.layer === layer && this.drag.index === index;
        const shape = dragged ? { type: stored.type, points: this.drag.points } : stored;
        const selected = this.selected && this.selected.key === key(layer) && this.selected.index === index;
        const node = this.shapeNode(shape, `shape${mine ? "" : " other"}${selected ? " selected" : ""}`);
        if (mine) { node.dataset.layerKey = key(layer); node.dataset.index = String(index); }
        group.append(node);
        const label = this.labelNode(shape, mpp);
        if (label) group.append(label);
        if (selected) {
          (dragged ? this.drag.points : editablePoints(shape)).forEach((point, handle) => {
            const [x, y] = this.screen(point);
            group.append(svgNode("circle", { cx: x, cy: y, r: 6, class: "handle", "data-handle": String(handle) }));
          });
        }
      });
      nodes.push(group);
    }
    if (this.draft.length) {
      const type = ["rectangle", "ellipse"].includes(this.tool) ? this.tool : "line";
      nodes.push(this.shapeNode({ type, points: this.draft }, "draft"));
    }
    this.svg.replaceChildren(...nodes);
  }
}
