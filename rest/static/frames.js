// Decoded frames kept in memory (least recently used out), shared by every viewport, and a
// small prefetch queue so that scrolling a stack finds the next images ready.
import { loadFrame } from "./api.js";

const LIMIT = 600;
const entries = new Map();

export function cachedFrame(url) {
  let entry = entries.get(url);
  if (entry) {
    entries.delete(url);
    entries.set(url, entry);
    return entry;
  }
  entry = loadFrame(url);
  entry.catch(() => entries.delete(url));
  entries.set(url, entry);
  while (entries.size > LIMIT) {
    const [oldest, promise] = entries.entries().next().value;
    entries.delete(oldest);
    promise.then((frame) => frame.bitmap.close(), () => {});
  }
  return entry;
}

export function hasFrame(url) {
  return entries.has(url);
}

// Prefetch: one queue per viewport, nearest images first, a few requests at a time.
export class Prefetcher {
  constructor(concurrency = 4) {
    this.concurrency = concurrency;
    this.queue = [];
    this.running = 0;
  }

  replace(urls) {
    this.queue = urls.filter((url) => !hasFrame(url));
    this.pump();
  }

  clear() {
    this.queue = [];
  }

  pump() {
    while (this.running < this.concurrency && this.queue.length) {
      const url = this.queue.shift();
      if (hasFrame(url)) continue;
      this.running += 1;
      cachedFrame(url).catch(() => {}).finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }
}
