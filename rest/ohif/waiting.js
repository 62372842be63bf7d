// The page shown while the studies a viewer URL opens are still being retrieved: it asks the
// node every second whether any is still on its way, and loads the viewer once none is.
(function () {
  "use strict";
  var stateUrl = "/viewer/retrieval-state" + window.location.search;
  function check() {
    fetch(stateUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (state && state.waiting === 0) {
          window.location.reload();
        } else {
          window.setTimeout(check, 1000);
        }
      })
      .catch(function () { window.setTimeout(check, 1000); });
  }
  window.setTimeout(check, 1000);
})();
