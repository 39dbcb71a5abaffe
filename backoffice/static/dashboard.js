// The dashboard's charts: the series come from the page as JSON (no inline script).
(function () {
  "use strict";
  var source = document.getElementById("dashboard-series");
  if (!source || typeof Chart === "undefined") { return; }
  var series = JSON.parse(source.textContent);
  var palette = ["#0d6efd", "#198754", "#fd7e14", "#6f42c1", "#d63384", "#20c997", "#6c757d"];

  function datasets(perCurrency) {
    return Object.keys(perCurrency).map(function (currency, i) {
      return {
        label: currency,
        data: perCurrency[currency].map(Number),
        backgroundColor: palette[i % palette.length]
      };
    });
  }

  var charts = {
    revenue: datasets(series.revenue),
    refunds: datasets(series.refunds),
    renewals: [{label: "Renewals", data: series.renewals, backgroundColor: palette[0]}]
  };
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var name = canvas.getAttribute("data-chart");
    new Chart(canvas, {
      type: "bar",
      data: {labels: series.months, datasets: charts[name] || []},
      options: {
        animation: false,
        responsive: true,
        plugins: {legend: {display: name !== "renewals"}},
        scales: {y: {beginAtZero: true, ticks: {precision: 0}}}
      }
    });
  });
})();
