// Tollgate portal: progressive enhancement only (the pages work without it).
// Copy buttons, and the usage chart drawn with the vendored uPlot from
// /usage.json (same origin, no inline script: the page's CSP forbids it).
"use strict";

document.addEventListener("click", function (ev) {
  var btn = ev.target.closest("button[data-copy]");
  if (!btn) return;
  var el = document.getElementById(btn.getAttribute("data-copy"));
  if (!el || !navigator.clipboard) return;
  navigator.clipboard.writeText(el.textContent).then(function () {
    btn.textContent = "Copied";
  });
});

function drawUsage(box) {
  fetch(box.getAttribute("data-src"), { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (res) {
      var days = [];
      var start = Date.parse(res.from) / 1000, end = Date.parse(res.to) / 1000;
      for (var t = start; t < end; t += 86400) days.push(t);
      var data = [days], series = [{}];
      (res.series || []).forEach(function (s) {
        var byDay = {};
        s.points.forEach(function (p) { byDay[Date.parse(p.start) / 1000] = p.total_tokens; });
        data.push(days.map(function (d) { return byDay[d] || 0; }));
        series.push({ label: (s.group.model || "all") + " tokens", width: 2,
          stroke: ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099"][(series.length - 1) % 5] });
      });
      box.setAttribute("data-total-tokens", String(res.totals.total_tokens));
      if (typeof uPlot === "undefined") return;
      new uPlot({ width: box.clientWidth || 800, height: 300, title: "Tokens per day", series: series,
        axes: [{}, { label: "tokens" }] }, data, box);
      box.setAttribute("data-drawn", "true");
    });
}

document.addEventListener("DOMContentLoaded", function () {
  var box = document.getElementById("chart");
  if (box) drawUsage(box);
});
