// Draws the dashboard's two charts with the vendored Chart.js (static/vendor/chartjs, no CDN).
// Figures arrive as exact decimal strings; they are parsed to numbers only to draw bars and lines.
// A click on a bar or a point opens the usage list behind it.
(function () {
  "use strict";
  function read(id) { return JSON.parse(document.getElementById(id).textContent); }
  function money(currency) {
    var fmt = new Intl.NumberFormat(undefined, { style: "currency", currency: currency, maximumFractionDigits: 0 });
    return function (value) { return fmt.format(value); };
  }
  function openUrl(urls) {
    return function (event, elements) {
      if (elements.length) { window.location.href = urls[elements[0].index]; }
    };
  }
  function draw() {
    if (typeof Chart === "undefined") { return; }
    var colors = ["#417690", "#f5a623"];
    var team = read("team-chart-data");
    var teamFormat = money(team.currency);
    window.billingCharts = window.billingCharts || {};
    window.billingCharts.team = new Chart(document.getElementById("team-chart"), {
      type: "bar",
      data: {
        labels: team.labels,
        datasets: team.datasets.map(function (set, i) {
          return { label: set.label, data: set.data.map(Number), backgroundColor: colors[i % colors.length] };
        })
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, onClick: openUrl(team.urls),
        scales: { y: { beginAtZero: true, ticks: { callback: teamFormat } } },
        plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + teamFormat(c.parsed.y); } } } }
      }
    });
    var month = read("month-chart-data");
    var monthFormat = money(month.currency);
    window.billingCharts.month = new Chart(document.getElementById("month-chart"), {
      type: "line",
      data: {
        labels: month.labels,
        datasets: [{ label: "Cost (" + month.currency + ")", data: month.data.map(Number), borderColor: colors[0],
                     backgroundColor: colors[0], tension: 0, pointRadius: 4 }]
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, onClick: openUrl(month.urls),
        scales: { y: { beginAtZero: true, ticks: { callback: monthFormat } } },
        plugins: { legend: { display: false },
                   tooltip: { callbacks: { label: function (c) { return monthFormat(c.parsed.y); } } } }
      }
    });
    drawMrr();
    document.getElementById("dashboard").dataset.chartsDrawn = "true";
  }
  // MRR movements: new and expansion above zero, contraction and churn below (stacked), MRR as a line.
  function drawMrr() {
    var element = document.getElementById("mrr-chart-data");
    if (!element) { return; }
    var mrr = JSON.parse(element.textContent);
    var format = money(mrr.currency);
    var sets = [["new", "New", "#2e7d32"], ["expansion", "Expansion", "#81c784"],
                ["contraction", "Contraction", "#f5a623"], ["churn", "Churn", "#c62828"]];
    var datasets = sets.map(function (s) {
      return { type: "bar", label: s[1], data: mrr.movements[s[0]].map(Number), backgroundColor: s[2], stack: "moves",
               yAxisID: "y" };
    });
    datasets.push({ type: "line", label: "MRR", data: mrr.mrr.map(Number), borderColor: "#417690",
                    backgroundColor: "#417690", tension: 0, pointRadius: 3, yAxisID: "y" });
    window.billingCharts.mrr = new Chart(document.getElementById("mrr-chart"), {
      data: { labels: mrr.labels, datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, ticks: { callback: format } } },
        plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + format(c.parsed.y); } } } }
      }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
