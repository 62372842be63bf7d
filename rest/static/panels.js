// The side panels: series thumbnails, documents (PDF and SR), and the search dialog.
import { frameUrl, getJson, postJson, studyUrl } from "./api.js";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderThumbnails(container, study, listing, thumbnailQuery, onPick) {
  container.replaceChildren();
  for (const series of listing.series) {
    const button = element("button", "thumbnail");
    button.type = "button";
    button.dataset.series = series.seriesInstanceUID;
    button.title = series.description || series.modality || "Series";
    if (series.thumbnail) {
      const image = element("img");
      image.alt = "";
      image.loading = "lazy";
      image.src = frameUrl(study, series.thumbnail, 1, { query: thumbnailQuery });
      button.appendChild(image);
    } else {
      button.appendChild(element("div", "thumb-kind", series.kind.toUpperCase()));
    }
    const count = series.instances.reduce((n, i) => n + (i.kind === "image" ? i.frames : 1), 0);
    const noun = { image: "image", video: "video", pdf: "document", sr: "report" }[series.kind] || "object";
    button.appendChild(element("span", "label", [series.number && `#${series.number}`, series.modality, series.description].filter(Boolean).join(" ")));
    button.appendChild(element("span", "label", `${count} ${noun}${count === 1 ? "" : "s"}`));
    button.addEventListener("click", () => onPick(series));
    container.appendChild(button);
  }
}

export function markThumbnail(container, seriesUid) {
  for (const button of container.querySelectorAll(".thumbnail")) {
    button.classList.toggle("active", button.dataset.series === seriesUid);
  }
}

export function renderDocuments(list, view, study, listing) {
  if (!list) return;
  list.replaceChildren();
  view.replaceChildren();
  const documents = [];
  for (const series of listing.series) {
    for (const instance of series.instances) {
      if (instance.kind === "pdf" || instance.kind === "sr") documents.push({ series, instance });
    }
  }
  if (!documents.length) {
    list.appendChild(element("li", "empty", "No documents in this study"));
    return;
  }
  for (const { series, instance } of documents) {
    const item = element("li");
    const button = element("button", "document", `${instance.kind === "pdf" ? "PDF" : "Report"}: ${series.description || series.modality || "document"}`);
    button.type = "button";
    button.dataset.sop = instance.sopInstanceUID;
    button.addEventListener("click", () => openDocument(view, study, instance));
    item.appendChild(button);
    list.appendChild(item);
  }
}

async function openDocument(view, study, instance) {
  view.replaceChildren(element("p", "loading", "Loading…"));
  const path = `/instances/${encodeURIComponent(instance.sopInstanceUID)}`;
  if (instance.kind === "pdf") {
    await showDocument(view, studyUrl(study, path + "/document"));
    return;
  }
  try {
    const report = await getJson(studyUrl(study, path + "/report"));
    const box = element("div", "report");
    box.appendChild(element("h3", "", report.title));
    for (const line of report.lines) {
      const row = element("div", line.heading ? "line heading" : "line");
      row.style.paddingLeft = `${line.level * 14}px`;
      if (line.heading) {
        row.textContent = line.label;
      } else {
        if (line.label) row.appendChild(element("span", "label", line.label + ": "));
        row.appendChild(element("span", "value", line.value));
      }
      box.appendChild(row);
    }
    view.replaceChildren(box);
  } catch (error) {
    view.replaceChildren(element("p", "error", error.message));
  }
}

// The node serves inline only what it checked is a PDF, sandboxed by its own
// Content-Security-Policy; anything else comes as a download and gets a link, never a frame.
// The frame has no sandbox attribute: Chromium shows no PDF in a sandboxed iframe at all.
async function showDocument(view, url) {
  let response;
  try {
    response = await fetch(url, { method: "HEAD", credentials: "same-origin" });
  } catch (error) {
    view.replaceChildren(element("p", "error", error.message));
    return;
  }
  if (!response.ok) {
    view.replaceChildren(element("p", "error", `The document could not be opened (${response.status})`));
    return;
  }
  if (response.headers.get("Content-Type") === "application/pdf") {
    const frame = element("iframe");
    frame.title = "PDF document";
    frame.src = url;
    view.replaceChildren(frame);
    return;
  }
  const note = element("p", "document-download", "This document is not a PDF and cannot be shown here. ");
  const link = element("a", "", "Download it");
  link.href = url;
  link.download = "document.bin";
  note.appendChild(link);
  view.replaceChildren(note);
}

export function bindSearch(dialog, onOpen) {
  if (!dialog) return null;
  const form = dialog.querySelector("#search-form");
  const results = dialog.querySelector("#search-results");
  dialog.querySelector("#search-close").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form).entries()) {
      if (String(value).trim()) params.set(key, String(value).trim());
    }
    if (![...params.keys()].length) {
      results.textContent = "Enter at least one search field.";
      return;
    }
    results.textContent = "Searching…";
    try {
      const found = await getJson("/ngv/api/search?" + params.toString());
      showResults(results, found, onOpen, dialog);
    } catch (error) {
      results.textContent = error.message;
    }
  });
  return () => {
    dialog.showModal();
    form.querySelector("input").focus();
  };
}

function showResults(results, found, onOpen, dialog) {
  results.replaceChildren();
  if (found.failed && found.failed.length) {
    results.appendChild(element("p", "error", "Not answering: " + found.failed.map((f) => f.aeTitle).join(", ")));
  }
  if (!found.studies.length) {
    results.appendChild(element("p", "", "No studies found."));
    return;
  }
  const table = element("table");
  const head = element("tr");
  for (const title of ["Patient", "ID", "Date", "Description", "Modalities", "Where", ""]) head.appendChild(element("th", "", title));
  table.appendChild(head);
  for (const study of found.studies) {
    const row = element("tr");
    for (const value of [study.patientName, study.patientID, study.studyDate, study.studyDescription, study.modalities.join(", "), study.source || "local"]) {
      row.appendChild(element("td", "", value || ""));
    }
    const cell = element("td");
    const open = element("button", "", "Open");
    open.type = "button";
    open.addEventListener("click", async () => {
      open.disabled = true;
      try {
        await postJson("/ngv/api/search/open", { studyInstanceUID: study.studyInstanceUID, source: study.source });
        dialog.close();
        onOpen(study.studyInstanceUID);
      } catch (error) {
        open.disabled = false;
        open.textContent = error.message;
      }
    });
    cell.appendChild(open);
    row.appendChild(cell);
    table.appendChild(row);
  }
  results.appendChild(table);
}
