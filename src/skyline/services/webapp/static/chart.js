/* Skyline charts: draws every <div data-chart="ID"> from the JSON in <script id="ID"> with
   the vendored uPlot. The JSON is
     {"t": [unix s...], "v": [value|null...],            the series as charted (a counter's
                                                          rate, never its raw total)
      "marks": [{"t", "v", "label", "status"}...],        events: drawn on the charted line
      "band": [low|null, high|null] | null,               what the detector expected: shaded
      "no_data_since": unix s | null, "now": unix s,      a series that stopped: marked
      "y_label": "...",
      "label": "..." | absent,                            the main line's legend label
      "lines": [{"label", "v": [value|null...]}...]}      more series on the same times (an
                                                          anomaly's related metrics, normalised)
   Numbers read 12.5k / 64.78M, times are UTC in ISO order (static/format.js), as in the
   tables. Drag selects a range to zoom into, the wheel zooms around the cursor, shift-drag
   pans, double-click resets. */
(function () {
  "use strict";
  var F = window.skylineFormat;
  var MARKS = [
    // status -> series: open incidents red, ended ones green, vetoed candidates grey
    {label: "anomalous", statuses: ["anomalous"], fill: "#dc2626", stroke: "#7f1d1d"},
    {label: "recovered / new level", statuses: ["recovered", "new_level"], fill: "#16a34a",
     stroke: "#14532d"},
    {label: "vetoed", statuses: ["vetoed"], fill: "#9ca3af", stroke: "#4b5563"}
  ];

  // related metrics' lines: distinct, readable on light and dark backgrounds
  var PALETTE = ["#ea580c", "#059669", "#7c3aed", "#db2777", "#0891b2", "#ca8a04",
                 "#4f46e5", "#65a30d", "#e11d48", "#0d9488"];

  function nearest(xs, t) {
    var lo = 0, hi = xs.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] < t) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && Math.abs(xs[lo - 1] - t) < Math.abs(xs[lo] - t)) lo -= 1;
    return lo;
  }

  /* One series per kind of mark: null everywhere but at the point nearest each mark, at
     the charted value there (the mark lies on the line), or its own value when given. */
  function markSeries(xs, ys, marks, kind) {
    var out = new Array(xs.length).fill(null);
    marks.forEach(function (m) {
      if (!xs.length || kind.statuses.indexOf(m.status || "anomalous") < 0) return;
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

  /* Time labels, 24 h, in the zone shown (UTC unless chosen otherwise): the finer the span,
     the more of the time they show. */
  function timeLabels(u, splits) {
    var span = u.scales.x.max - u.scales.x.min;
    return splits.map(function (ts) {
      var full = F.time(ts, "minute");
      if (span > 4 * 86400) return full.slice(0, 10);
      if (span > 86400) return full.slice(5);
      return full.slice(11);
    });
  }

  function labelWidth(u, values) {
    if (!values) return 50;
    u.ctx.font = "12px system-ui, sans-serif";
    var w = 0;
    values.forEach(function (v) { w = Math.max(w, u.ctx.measureText(String(v)).width); });
    return Math.ceil(w / (window.devicePixelRatio || 1)) + 22;
  }

  function colour(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  /* The expected band behind the line, and the "no data since" mark. */
  function decorations(d) {
    return {
      drawAxes: [function (u) {
        var b = d.band;
        if (!b || (b[0] === null && b[1] === null)) return;
        var top = b[1] === null ? u.bbox.top : u.valToPos(b[1], "y", true);
        var bottom = b[0] === null ? u.bbox.top + u.bbox.height : u.valToPos(b[0], "y", true);
        top = Math.max(u.bbox.top, top);
        bottom = Math.min(u.bbox.top + u.bbox.height, bottom);
        var c = u.ctx;
        c.save();
        c.fillStyle = "rgba(34, 197, 94, 0.16)";
        c.fillRect(u.bbox.left, top, u.bbox.width, Math.max(1, bottom - top));
        c.restore();
      }],
      draw: [function (u) {
        if (d.no_data_since === null || d.no_data_since === undefined) return;
        var x = u.valToPos(d.no_data_since, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        var c = u.ctx, dpr = window.devicePixelRatio || 1;
        c.save();
        c.fillStyle = "rgba(148, 163, 184, 0.18)";
        c.fillRect(x, u.bbox.top, u.bbox.left + u.bbox.width - x, u.bbox.height);
        c.strokeStyle = "#b45309";
        c.setLineDash([6 * dpr, 4 * dpr]);
        c.lineWidth = 1.5 * dpr;
        c.beginPath(); c.moveTo(x, u.bbox.top); c.lineTo(x, u.bbox.top + u.bbox.height); c.stroke();
        c.setLineDash([]);
        c.fillStyle = colour("--warn", "#b45309");
        c.font = (12 * dpr) + "px system-ui, sans-serif";
        var text = "no data since " + F.time(d.no_data_since, "minute") + " " + F.zone();
        var w = c.measureText(text).width;
        c.fillText(text, Math.max(u.bbox.left + 4 * dpr, Math.min(x + 6 * dpr,
                   u.bbox.left + u.bbox.width - w - 4 * dpr)), u.bbox.top + 16 * dpr);
        c.restore();
      }]
    };
  }

  function draw(el) {
    var src = document.getElementById(el.getAttribute("data-chart"));
    if (!src || typeof uPlot === "undefined" || !F) return null;
    var d = JSON.parse(src.textContent);
    var xs = d.t, ys = d.v, marks = d.marks || [];
    var width = function () { return Math.max(260, el.clientWidth || 800); };
    var height = function () { return el.clientWidth && el.clientWidth < 500 ? 260 : 320; };
    var axisColour = colour("--fg", "#1f2937"), grid = colour("--line", "#e5e7eb");
    var series = [
      {label: "time (" + F.zone() + ")", value: function (u, ts) { return ts === null ? "--" : F.time(ts, "second"); }},
      {label: d.label || d.y_label || "value", stroke: "#2563eb",
       width: d.lines ? 2.5 : 1.25, points: {show: false},
       spanGaps: false, value: function (u, v) { return v === null ? "--" : F.si(v, 6); }}
    ];
    var data = [xs, ys];
    (d.lines || []).forEach(function (line, i) {
      series.push({label: line.label, stroke: PALETTE[i % PALETTE.length], width: 1.25,
                   points: {show: false}, spanGaps: false,
                   value: function (u, v) { return v === null ? "--" : F.si(v, 3); }});
      data.push(line.v);
    });
    MARKS.forEach(function (kind) {
      var s = markSeries(xs, ys, marks, kind);
      if (!s.some(function (v) { return v !== null; })) return;
      series.push({label: kind.label, stroke: kind.fill, width: 0, paths: function () { return null; },
                   points: {show: true, size: 11, fill: kind.fill, stroke: kind.stroke},
                   value: function (u, v) { return v === null ? "--" : F.si(v, 6); }});
      data.push(s);
    });
    var band = d.band || [null, null];
    var opts = {
      width: width(),
      height: height(),
      cursor: {
        drag: {x: true, y: false, setScale: true},
        // shift-drag pans (below) instead of selecting
        bind: {mousedown: function (u, targ, handler) {
          return function (e) { if (!e.shiftKey) handler(e); return null; };
        }}
      },
      scales: {
        x: {time: true, range: function (u, min, max) {
          // a series that stopped is drawn up to now, so the silence shows
          var hi = d.no_data_since !== null && d.no_data_since !== undefined && d.now ? Math.max(max, d.now) : max;
          return [min, hi];
        }},
        y: {range: function (u, min, max) {
          // the expected band is always in view: the line is read against it
          if (band[0] !== null) min = Math.min(min, band[0]);
          if (band[1] !== null) max = Math.max(max, band[1]);
          return uPlot.rangeNum(min, max, 0.1, true);
        }}
      },
      series: series,
      axes: [
        {stroke: axisColour, grid: {stroke: grid}, ticks: {stroke: grid}, space: 90,
         values: timeLabels},
        {stroke: axisColour, grid: {stroke: grid}, ticks: {stroke: grid}, space: 36,
         values: function (u, splits) { return splits.map(function (v) { return F.si(v, 4); }); },
         size: function (u, values) { return labelWidth(u, values); },
         label: d.y_label || "", labelSize: 18}
      ],
      hooks: decorations(d)
    };
    var u = new uPlot(opts, data, el);
    panAndWheel(u);
    window.addEventListener("resize", function () { u.setSize({width: width(), height: height()}); });
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
