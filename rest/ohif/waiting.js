// The page shown while the studies a viewer URL opens are still being retrieved: it asks the
// node every second how their retrievals are going, shows the instances received of those the
// source announced, and loads the viewer once none is on its way. A failed retrieval is shown
// with its cause and a Retry button (opening the URL again retrieves it again) and, when the URL
// names other studies, a link that opens those without it. Text only, never markup: the
// messages come from the archive.
(function () {
  "use strict";
  var stateUrl = "/viewer/retrieval-state" + window.location.search;
  var title = document.querySelector("h1");
  var happened = document.querySelector(".what-happened");
  var toDo = document.querySelector(".what-to-do");
  var waiting = {
    title: title.textContent, happened: happened.textContent, toDo: toDo.textContent
  };
  var shown = "";

  function counts(study) {
    if (study.announced) {
      return study.received + " of " + study.announced + " instances received";
    }
    return study.received ? study.received + " instances received" : "";
  }

  function withoutFailed(failed) {
    var params = new URLSearchParams(window.location.search);
    var named = (params.get("StudyInstanceUIDs") || "").split(",").filter(Boolean);
    var failedUids = failed.map(function (study) { return study.studyInstanceUID; });
    var others = named.filter(function (uid) { return failedUids.indexOf(uid) < 0; });
    if (others.length === 0) {
      return null;
    }
    params.set("StudyInstanceUIDs", others.join(","));
    return window.location.pathname + "?" + params.toString();
  }

  function showFailure(failed) {
    title.textContent = failed.length > 1 ? "The studies could not be retrieved"
                                          : "The study could not be retrieved";
    happened.textContent = "";
    failed.forEach(function (study) {
      var line = document.createElement("span");
      line.className = "failure";
      line.style.display = "block";
      var received = counts(study);
      var text = (study.message || "The retrieval from " + study.source + " failed") +
        (received ? " (" + received + ")" : "");
      line.textContent = /[.?!]$/.test(text) ? text : text + ".";
      happened.appendChild(line);
    });
    toDo.textContent = "Retry; if it fails again, ask for the archive's link to this node " +
      "to be checked. ";
    var retry = document.createElement("button");
    retry.type = "button";
    retry.textContent = "Retry";
    retry.addEventListener("click", function () { window.location.reload(); });
    toDo.appendChild(retry);
    var others = withoutFailed(failed);
    if (others) {
      var link = document.createElement("a");
      link.href = others;
      link.textContent = "Open the other studies without it";
      toDo.appendChild(document.createTextNode(" "));
      toDo.appendChild(link);
    }
  }

  function showProgress(studies) {
    title.textContent = waiting.title;
    happened.textContent = waiting.happened;
    var received = studies.map(counts).filter(Boolean);
    toDo.textContent = (received.length ? received.join("; ") + ". " : "") + waiting.toDo;
  }

  function show(state) {
    var key = JSON.stringify(state.studies);
    if (key === shown) {
      return;
    }
    shown = key;
    var failed = state.studies.filter(function (study) { return study.state === "failed"; });
    if (failed.length) {
      showFailure(failed);
    } else {
      showProgress(state.studies);
    }
  }

  function check() {
    fetch(stateUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (state && state.waiting === 0 && state.studies.length === 0) {
          window.location.reload();
          return;
        }
        if (state) {
          show(state);
        }
        window.setTimeout(check, 1000);
      })
      .catch(function () { window.setTimeout(check, 1000); });
  }
  check();
})();
