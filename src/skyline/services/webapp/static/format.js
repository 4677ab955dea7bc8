/* One way to write numbers and times on every page, the same rules as the server's
   templating.si and iso: 64.78M, 12.5k, 0.0123 (never 6.47781e+07); times 24 h in ISO order
   (2026-12-04 13:57:00), in UTC unless the person chose this browser's own zone (the
   footer's switch, remembered in localStorage; the default comes from WEBAPP_USER_TIMEZONE
   as <html data-tz-default>). The server writes times as <time datetime="...Z">; in local
   mode they are rewritten here, and every "UTC" of class "tz" names the local zone. */
(function () {
  "use strict";
  var SI = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  var KEY = "skyline.tz";

  function trim(x, digits) {
    var a = Math.abs(x);
    var decimals = Math.max(0, digits - 1 - (a ? Math.floor(Math.log10(a)) : 0));
    var text = x.toFixed(Math.min(decimals, 20));
    return text.indexOf(".") >= 0 ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  }

  function si(x, digits) {
    digits = digits || 4;
    if (x === null || x === undefined) return "-";
    if (!isFinite(x)) return String(x);
    x = Number(x.toPrecision(digits));  // rounded first, so that 999.96 reads 1k, not 1000
    var a = Math.abs(x);
    for (var i = 0; i < SI.length; i++) {
      if (a >= SI[i][0]) return trim(x / SI[i][0], digits) + SI[i][1];
    }
    if (a !== 0 && a < 1e-3) return x.toExponential(Math.max(1, digits - 2));
    return trim(x, digits);
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  /* "utc" or "local": the person's choice in this browser, else the server's default. */
  function mode() {
    var chosen = null;
    try { chosen = window.localStorage.getItem(KEY); } catch (e) { /* private mode */ }
    if (chosen === "utc" || chosen === "local") return chosen;
    return document.documentElement.getAttribute("data-tz-default") === "local" ? "local" : "utc";
  }

  function localZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "local"; } catch (e) { return "local"; }
  }

  /* The zone the times are shown in, as a label: "UTC" or "Asia/Tokyo". */
  function zone() { return mode() === "local" ? localZone() : "UTC"; }

  /* Unix seconds -> "2026-12-04 13:57:00" in the zone shown; `parts` "date", "minute" or
     "second". */
  function time(ts, parts) {
    var d = new Date(ts * 1000);
    var utc = mode() !== "local";
    var Y = utc ? d.getUTCFullYear() : d.getFullYear(), M = utc ? d.getUTCMonth() : d.getMonth();
    var D = utc ? d.getUTCDate() : d.getDate(), h = utc ? d.getUTCHours() : d.getHours();
    var m = utc ? d.getUTCMinutes() : d.getMinutes(), s = utc ? d.getUTCSeconds() : d.getSeconds();
    var date = Y + "-" + pad(M + 1) + "-" + pad(D);
    if (parts === "date") return date;
    var hm = pad(h) + ":" + pad(m);
    if (parts === "minute") return date + " " + hm;
    return date + " " + hm + ":" + pad(s);
  }

  /* "+09:00": the local zone's offset at that time (ISO 8601). */
  function offset(ts) {
    var o = -new Date(ts * 1000).getTimezoneOffset();
    var sign = o < 0 ? "-" : "+";
    o = Math.abs(o);
    return sign + pad(Math.floor(o / 60)) + ":" + pad(o % 60);
  }

  /* In local mode: every <time datetime> under `root` in the local zone, ISO 8601 with its
     offset (2026-12-04T22:57:00+09:00), and every "UTC" label of class "tz" names the zone. */
  function localize(root) {
    root = root || document;
    if (mode() !== "local") return;
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var el = times[i];
      var ms = Date.parse(el.getAttribute("datetime"));
      if (isNaN(ms)) continue;
      var ts = ms / 1000;
      if (!el.hasAttribute("title")) el.setAttribute("title", el.getAttribute("datetime"));
      el.textContent = time(ts, "second").replace(" ", "T") + offset(ts);
    }
    var labels = root.querySelectorAll(".tz");
    for (var j = 0; j < labels.length; j++) labels[j].textContent = localZone();
  }

  function init() {
    var choice = document.getElementById("tz-choice");
    if (choice) {
      choice.value = mode();
      choice.options[1].textContent = "this browser's zone (" + localZone() + ")";
      choice.addEventListener("change", function () {
        try { window.localStorage.setItem(KEY, choice.value); } catch (e) { /* private mode */ }
        window.location.reload();  // the charts and every time drawn again in the new zone
      });
    }
    localize(document);
  }

  window.skylineFormat = {si: si, time: time, utc: time, zone: zone, localize: localize};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
