// The viewer's requests: same origin, the session cookie goes along; sticky keeps a proxy's routing.
const config = JSON.parse(document.getElementById("viewer-config").textContent);

export function viewerConfig() {
  return config;
}

function withSticky(url) {
  if (!config.sticky) return url;
  return url + (url.includes("?") ? "&" : "?") + "sticky=" + encodeURIComponent(config.sticky);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(response) {
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
  } catch (_) { /* not JSON */ }
  if (response.status === 401) message = "The viewer session has ended. Open the viewer again from the calling application.";
  return new ApiError(response.status, message);
}

export async function getJson(url) {
  const response = await fetch(withSticky(url), { credentials: "same-origin" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function postJson(url, body) {
  const response = await fetch(withSticky(url), {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

const base = (study) => `/ngv/api/studies/${encodeURIComponent(study)}`;

export function studyUrl(study, suffix) {
  return withSticky(base(study) + suffix);
}

export function frameUrl(study, sop, frame, options = {}) {
  const params = new URLSearchParams();
  if (options.window) {
    params.set("wc", String(Math.round(options.window.center * 100) / 100));
    params.set("ww", String(Math.max(1, Math.round(options.window.width * 100) / 100)));
  }
  if (options.query) new URLSearchParams(options.query).forEach((v, k) => params.set(k, v));
  if (config.sticky) params.set("sticky", config.sticky);
  const query = params.toString();
  return `${base(study)}/instances/${encodeURIComponent(sop)}/frames/${frame}` + (query ? "?" + query : "");
}

// A decoded frame: the bitmap to draw and the window the server applied.
export async function loadFrame(url, signal) {
  const response = await fetch(url, { credentials: "same-origin", signal });
  if (!response.ok) throw await failure(response);
  const header = response.headers.get("X-Window");
  let window = null;
  if (header) {
    const [center, width] = header.split(" ").map(Number);
    if (Number.isFinite(center) && Number.isFinite(width)) window = { center, width };
  }
  const frames = Number(response.headers.get("X-Frames") || "1");
  const bitmap = await createImageBitmap(await response.blob());
  return { bitmap, window, frames };
}
