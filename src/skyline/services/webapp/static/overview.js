/* The overview's "broken now" part (#now) refreshes itself from /overview/now every
   data-interval seconds, without reloading the page, unless the checkbox is off (the choice
   is remembered in this browser). A failed refresh keeps the last part and says so. */
(function () {
  "use strict";
  var KEY = "skyline.overview.autorefresh";

  function init() {
    var box = document.getElementById("now");
    var toggle = document.getElementById("auto-refresh");
    if (!box || !toggle) return;
    var every = Math.max(2, Number(box.getAttribute("data-interval")) || 30) * 1000;
    var timer = null;
    try { toggle.checked = window.localStorage.getItem(KEY) !== "off"; } catch (e) { /* private mode */ }

    function refresh() {
      // a form being typed into is not replaced under the user's fingers
      if (box.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
      fetch(box.getAttribute("data-refresh"), {headers: {"Accept": "text/html"}, credentials: "same-origin"})
        .then(function (r) {
          if (r.redirected || !r.ok) throw new Error("HTTP " + r.status);
          return r.text();
        })
        .then(function (html) {
          box.innerHTML = html;
          box.removeAttribute("data-stale");
          if (window.skylineFormat) window.skylineFormat.localize(box);
        })
        .catch(function () { box.setAttribute("data-stale", "refresh failed; showing the last answer"); });
    }

    function arm() {
      if (timer !== null) window.clearInterval(timer);
      timer = toggle.checked ? window.setInterval(refresh, every) : null;
    }

    toggle.addEventListener("change", function () {
      try { window.localStorage.setItem(KEY, toggle.checked ? "on" : "off"); } catch (e) { /* private mode */ }
      arm();
    });
    arm();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
