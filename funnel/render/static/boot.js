(function () {
  "use strict";
  var doc = document.documentElement;
  function openDetails() {
    var all = document.querySelectorAll("details");
    for (var i = 0; i < all.length; i++) { all[i].setAttribute("open", ""); }
  }
  window.addEventListener("beforeprint", openDetails);
  if (typeof window.Plotly === "undefined") {
    doc.className += " no-plotly";
    return;
  }
  var config = {responsive: true, displaylogo: false, scrollZoom: false,
                modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]};
  var holders = document.querySelectorAll("div[data-chart]");
  for (var i = 0; i < holders.length; i++) {
    var el = holders[i];
    var src = document.getElementById(el.id + "-data");
    if (!src) { continue; }
    try {
      var fig = JSON.parse(src.textContent);
      el.innerHTML = "";
      window.Plotly.newPlot(el, fig.data, fig.layout, config);
    } catch (err) {
      el.className += " chart-failed";
      el.textContent = "This chart could not be drawn; the table below has the same data.";
    }
  }
  window.addEventListener("afterprint", function () {
    for (var j = 0; j < holders.length; j++) {
      if (holders[j].classList.contains("js-plotly-plot")) { window.Plotly.Plots.resize(holders[j]); }
    }
  });
})();
