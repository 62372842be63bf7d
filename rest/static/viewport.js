// One cell of the image area: a stack of frames drawn on a canvas, with window/level, zoom,
// pan and cine. Frames are rendered by the server; the file's own window is the starting point.
// The top-left overlay names the patient and the date of the study whose images are drawn (the
// page's identify hook says what to write), so that a comparison never hides whose they are.
import { frameUrl, loadFrame, studyUrl } from "./api.js";
import { cachedFrame, Prefetcher } from "./frames.js";

const PREFETCH_AHEAD = 300;
const DEFAULT_FPS = 15;

function element(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

export class Viewport {
  constructor(grid, position, hooks) {
    this.hooks = hooks;
    this.position = position;
    this.root = element("div", "viewport tool-window", grid);
    this.root.tabIndex = 0;
    this.root.dataset.position = String(position);
    this.root.setAttribute("role", "img");
    this.root.setAttribute("aria-label", `Viewport ${position + 1}`);
    this.canvas = element("canvas", "", this.root);
    this.overlays = {};
    for (const corner of ["tl", "tr", "bl", "br"]) this.overlays[corner] = element("div", "overlay " + corner, this.root);
    this.patientLine = element("div", "overlay-patient", this.overlays.tl);
    this.dateLine = element("div", "overlay-date", this.overlays.tl);
    this.seriesLine = element("div", "overlay-series", this.overlays.tl);
    this.message = element("div", "message", this.root);
    this.progress = element("div", "progress", this.root);
    this.prefetcher = new Prefetcher();
    this.tool = "window";
    this.clear("");
    this.bindEvents();
    new ResizeObserver(() => this.draw()).observe(this.root);
  }

  clear(text, kind = "") {
    this.stopCine();
    this.study = null;
    delete this.root.dataset.study;
    this.series = null;
    this.stack = [];
    this.index = 0;
    this.current = null;
    this.removeVideo();
    this.resetView(false);
    this.setMessage(text, kind);
    this.root.dataset.state = "empty";
    this.draw();
  }

  setMessage(text, kind = "") {
    this.message.textContent = text || "";
    this.message.className = "message" + (kind ? " " + kind : "");
    this.message.hidden = !text;
  }

  setProgress(fraction) {
    this.progress.style.width = fraction > 0 && fraction < 1 ? `${Math.round(fraction * 100)}%` : "0";
  }

  resetView(render = true) {
    this.window = null;
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    if (render && this.stack.length) this.request();
    else this.draw();
  }

  show(study, series) {
    const sameSeries = this.series && this.series.seriesInstanceUID === series.seriesInstanceUID && this.study === study;
    this.stopCine();
    this.removeVideo();
    const previous = this.index;
    // A frame of another study never stays on screen under this study's name, not even while
    // the first frame of this one loads; a frame still on its way for it is dropped on arrival.
    this.ticket = (this.ticket || 0) + 1;
    if (this.study !== study && this.current) {
      if (this.current.owned) this.current.bitmap.close();
      this.current = null;
    }
    this.study = study;
    this.series = series;
    this.root.dataset.study = study;
    this.root.dataset.series = series.seriesInstanceUID;
    this.stack = [];
    for (const instance of series.instances) {
      if (instance.kind !== "image") continue;
      for (let frame = 1; frame <= instance.frames; frame += 1) this.stack.push({ sop: instance.sopInstanceUID, frame, frames: instance.frames });
    }
    if (!sameSeries) this.resetView(false);
    this.root.dataset.count = String(this.stack.length);
    if (series.kind === "video") return this.showVideo(series);
    if (!this.stack.length) {
      const text = series.kind === "pdf" || series.kind === "sr" ? "Document: open it in the documents panel" : "Nothing to show in this series";
      this.current = null;
      this.setMessage(text);
      this.root.dataset.state = "empty";
      this.draw();
      return;
    }
    this.index = sameSeries ? Math.min(previous, this.stack.length - 1) : 0;
    this.request();
  }

  showVideo(series) {
    const instance = series.instances.find((i) => i.kind === "video");
    this.current = null;
    this.draw();
    this.setMessage("");
    this.video = element("video", "", this.root);
    this.video.controls = true;
    this.video.preload = "metadata";
    this.video.src = studyUrl(this.study, `/instances/${encodeURIComponent(instance.sopInstanceUID)}/video`);
    this.video.addEventListener("error", () => this.setMessage("This video cannot be played here", "error"));
    this.root.dataset.state = "video";
    this.writeOverlays();
  }

  removeVideo() {
    if (this.video) {
      this.video.pause();
      this.video.remove();
      this.video = null;
    }
  }

  seriesLabel() {
    if (!this.series) return "";
    const s = this.series;
    return [s.modality, s.number ? `Se ${s.number}` : "", s.description].filter(Boolean).join("  ");
  }

  url(position, window) {
    const entry = this.stack[position];
    return frameUrl(this.study, entry.sop, entry.frame, { window });
  }

  async request() {
    if (!this.stack.length) return;
    const position = this.index;
    const window = this.window;
    const url = this.url(position, window);
    const ticket = (this.ticket = (this.ticket || 0) + 1);
    if (!this.current) this.setMessage("Loading…", "loading");
    this.root.dataset.state = "loading";
    try {
      // Window/level drags produce one-off images: not worth keeping in the shared cache.
      const frame = await (window ? loadFrame(url) : cachedFrame(url));
      if (ticket !== this.ticket) {
        if (window) frame.bitmap.close();
        return;
      }
      if (this.current && this.current.owned) this.current.bitmap.close();
      this.current = { ...frame, owned: Boolean(window) };
      if (!window && frame.window) this.fileWindow = frame.window;
      this.appliedWindow = window || frame.window;
      this.setMessage("");
      this.draw();
      this.root.dataset.state = "ready";
      this.root.dataset.index = String(position);
      this.hooks.onFrame?.(this);
      if (!window) this.prefetch();
    } catch (error) {
      if (ticket !== this.ticket) return;
      this.root.dataset.state = "error";
      this.setMessage(error.message || "This image cannot be shown", "error");
    } finally {
      if (ticket === this.ticket && this.pendingWindow) {
        this.pendingWindow = false;
        this.request();
      }
    }
  }

  prefetch() {
    const urls = [];
    for (let step = 1; step <= PREFETCH_AHEAD; step += 1) {
      const ahead = this.index + step;
      const behind = this.index - step;
      if (ahead < this.stack.length) urls.push(this.url(ahead, null));
      if (behind >= 0 && step <= 10) urls.push(this.url(behind, null));
      if (ahead >= this.stack.length && behind < 0) break;
    }
    this.prefetcher.replace(urls);
  }

  setIndex(position) {
    if (!this.stack.length) return;
    const next = Math.max(0, Math.min(this.stack.length - 1, position));
    if (next === this.index && this.current) return;
    this.index = next;
    this.request();
  }

  scroll(delta) {
    this.setIndex(this.index + delta);
  }

  setWindow(window) {
    this.window = window;
    if (this.root.dataset.state === "loading") this.pendingWindow = true;
    else this.request();
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(this.root.clientWidth * ratio));
    const height = Math.max(1, Math.round(this.root.clientHeight * ratio));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    const context = this.canvas.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = "#000";
    context.fillRect(0, 0, width, height);
    const frame = this.current;
    if (frame) {
      const bitmap = frame.bitmap;
      const scale = Math.min(width / bitmap.width, height / bitmap.height) * this.zoom;
      context.imageSmoothingEnabled = true;
      context.imageSmoothingQuality = "high";
      context.translate(width / 2 + this.panX * ratio, height / 2 + this.panY * ratio);
      context.scale(scale, scale);
      context.drawImage(bitmap, -bitmap.width / 2, -bitmap.height / 2);
      this.scale = scale / ratio;
    }
    this.writeOverlays();
  }

  writeOverlays() {
    const drawn = Boolean(this.current && this.stack.length);
    const identity = (drawn || this.video) && this.study ? this.hooks.identify?.(this.study) : null;
    this.patientLine.textContent = identity?.patient || "";
    this.dateLine.textContent = identity?.date || "";
    this.seriesLine.textContent = drawn || this.video ? this.seriesLabel() : "";
    if (!drawn) {
      for (const corner of ["tr", "bl", "br"]) this.overlays[corner].textContent = "";
      return;
    }
    const entry = this.stack[this.index];
    const frameText = entry.frames > 1 ? `  Fr ${entry.frame}/${entry.frames}` : "";
    this.overlays.tr.textContent = `Im ${this.index + 1}/${this.stack.length}${frameText}`;
    const w = this.appliedWindow;
    this.overlays.bl.textContent = w ? `W ${Math.round(w.width)}  L ${Math.round(w.center)}` : "";
    this.overlays.br.textContent = `Zoom ${Math.round((this.scale || 1) * 100)}%`;
  }

  setTool(tool) {
    this.tool = tool;
    this.root.classList.remove("tool-window", "tool-pan", "tool-zoom");
    this.root.classList.add("tool-" + tool);
  }

  bindEvents() {
    this.root.addEventListener("pointerdown", (event) => this.hooks.onActivate?.(this), true);
    this.root.addEventListener("focus", () => this.hooks.onActivate?.(this));
    this.root.addEventListener("wheel", (event) => {
      event.preventDefault();
      if (event.ctrlKey) {
        this.zoomBy(event.deltaY < 0 ? 1.1 : 1 / 1.1);
      } else if (event.deltaY !== 0) {
        this.scroll(event.deltaY > 0 ? 1 : -1);
      }
    }, { passive: false });
    this.root.addEventListener("contextmenu", (event) => event.preventDefault());
    this.root.addEventListener("dblclick", () => this.hooks.onToggleMaximize?.(this));
    this.canvas.addEventListener("pointerdown", (event) => this.startDrag(event));
  }

  zoomBy(factor) {
    this.zoom = Math.max(0.1, Math.min(20, this.zoom * factor));
    this.draw();
  }

  startDrag(event) {
    if (!this.current) return;
    const tool = event.button === 2 || event.shiftKey ? "pan" : event.button === 1 ? "zoom" : this.tool;
    const start = { x: event.clientX, y: event.clientY, panX: this.panX, panY: this.panY, zoom: this.zoom,
      window: this.window || this.appliedWindow || this.fileWindow || { center: 128, width: 256 } };
    this.canvas.setPointerCapture(event.pointerId);
    const move = (moved) => {
      const dx = moved.clientX - start.x;
      const dy = moved.clientY - start.y;
      if (tool === "pan") {
        this.panX = start.panX + dx;
        this.panY = start.panY + dy;
        this.draw();
      } else if (tool === "zoom") {
        this.zoom = Math.max(0.1, Math.min(20, start.zoom * Math.exp(-dy / 150)));
        this.draw();
      } else {
        const step = Math.max(start.window.width / 256, 0.5);
        this.setWindow({ center: start.window.center + dy * step, width: Math.max(1, start.window.width + dx * step) });
      }
    };
    const up = () => {
      this.canvas.removeEventListener("pointermove", move);
      this.canvas.removeEventListener("pointerup", up);
      this.canvas.removeEventListener("pointercancel", up);
    };
    this.canvas.addEventListener("pointermove", move);
    this.canvas.addEventListener("pointerup", up);
    this.canvas.addEventListener("pointercancel", up);
  }

  toggleCine() {
    if (this.cine) return this.stopCine();
    if (this.stack.length < 2) return false;
    const instance = this.series?.instances.find((i) => i.sopInstanceUID === this.stack[this.index].sop);
    const fps = instance && instance.frameRate ? instance.frameRate : DEFAULT_FPS;
    this.cine = setInterval(() => {
      if (this.root.dataset.state === "loading") return;
      this.setIndex(this.index + 1 < this.stack.length ? this.index + 1 : 0);
    }, 1000 / fps);
    this.hooks.onCine?.(this, true);
    return true;
  }

  stopCine() {
    if (this.cine) {
      clearInterval(this.cine);
      this.cine = null;
      this.hooks.onCine?.(this, false);
    }
    return false;
  }
}
