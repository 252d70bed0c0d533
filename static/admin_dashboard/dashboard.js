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
    document.getElementById("dashboard").dataset.chartsDrawn = "true";
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
