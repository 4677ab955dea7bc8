/* Skyline charts: draws every <div data-chart="ID"> from the JSON in <script id="ID"> with
   the vendored uPlot. The JSON is {"t": [unix s...], "v": [value|null...], "marks":
   [{"t", "v", "label"}...]}: the series, and the anomalies drawn as red points on it.
   Drag selects a range to zoom into, the wheel zooms around the cursor, shift-drag pans,
   double-click resets. Times are shown in UTC, as in the tables. */
(function () {
  "use strict";

  function nearest(xs, t) {
    var lo = 0, hi = xs.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] < t) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(xs[lo - 1] - t) < Math.abs(xs[lo] - t)) lo -= 1;
    return lo;
  }

  /* The anomaly series: null everywhere but at the point nearest each mark. */
  function markSeries(xs, ys, marks) {
    var out = new Array(xs.length).fill(null);
    marks.forEach(function (m) {
      if (!xs.length) return;
      var i = nearest(xs, m.t);
      out[i] = (m.v === null || m.v === undefined) ? ys[i] : m.v;
    });
    return out;
  }

  function panAndWheel(u) {
    var over = u.over;
    over.addEventListener("wheel", function (e) {
      e.preventDefault();
      var sc = u.scales.x, span = sc.max - sc.min;
      var at = u.posToVal(e.offsetX, "x");
      var f = e.deltaY < 0 ? 0.8 : 1.25;
      var lo = at - (at - sc.min) * f, hi = lo + span * f;
      u.setScale("x", {min: lo, max: hi});
    }, {passive: false});
    over.addEventListener("mousedown", function (e) {
      if (!e.shiftKey) return;
      var x0 = e.clientX, sc = u.scales.x, min0 = sc.min, max0 = sc.max;
      var perPx = (max0 - min0) / u.bbox.width * (window.devicePixelRatio || 1);
      function move(ev) {
        var dx = (ev.clientX - x0) * perPx;
        u.setScale("x", {min: min0 - dx, max: max0 - dx});
      }
      function up() {
        document.removeEventListener("mousemove", move);
        document.removeEventListener("mouseup", up);
      }
      document.addEventListener("mousemove", move);
      document.addEventListener("mouseup", up);
    });
  }

  function draw(el) {
    var src = document.getElementById(el.getAttribute("data-chart"));
    if (!src || typeof uPlot === "undefined") return null;
    var d = JSON.parse(src.textContent);
    var xs = d.t, ys = d.v;
    var width = function () { return Math.max(300, el.clientWidth || 800); };
    var opts = {
      width: width(),
      height: 320,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      cursor: {
        drag: {x: true, y: false, setScale: true},
        // shift-drag pans (below) instead of selecting
        bind: {mousedown: function (u, targ, handler) {
          return function (e) { if (!e.shiftKey) handler(e); return null; };
        }}
      },
      scales: {x: {time: true}},
      series: [
        {label: "time (UTC)"},
        {label: "value", stroke: "#2563eb", width: 1, points: {show: false}, spanGaps: false},
        {label: "anomaly", stroke: "#dc2626", width: 0, paths: function () { return null; },
         points: {show: true, size: 10, fill: "#dc2626", stroke: "#7f1d1d"}}
      ],
      axes: [{}, {size: 70}]
    };
    var u = new uPlot(opts, [xs, ys, markSeries(xs, ys, d.marks || [])], el);
    panAndWheel(u);
    window.addEventListener("resize", function () { u.setSize({width: width(), height: 320}); });
    return u;
  }

  function init() {
    window.skylineCharts = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var u = draw(el);
      if (u) window.skylineCharts.push(u);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
