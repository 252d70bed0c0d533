// Draws the usage page's bar chart with the vendored Chart.js (static/vendor/chartjs, no CDN).
// The figures arrive as decimal strings (json_script); Number() is for drawing only, the table
// beside the chart keeps the exact amounts.
(function () {
  "use strict";
  function draw() {
    var node = document.getElementById("usage-chart-data");
    var canvas = document.getElementById("usage-chart");
    if (!node || !canvas || typeof Chart === "undefined") { return; }
    var data = JSON.parse(node.textContent);
    window.portalChart = new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: [{ label: data.label, data: data.values.map(Number), backgroundColor: "#1f5fbf" }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } },
                 scales: { y: { beginAtZero: true, title: { display: true, text: data.currency } } } }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
}());
