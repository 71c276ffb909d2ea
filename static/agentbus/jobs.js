// The job list (/app/): redrawn when the caller's jobs change.
(function () {
  "use strict";
  var live = window.agentbusLive;
  var results = document.getElementById("job-results");
  var filters = document.getElementById("job-filters");

  filters.querySelectorAll("select").forEach(function (select) {
    select.addEventListener("change", function () { filters.submit(); });
  });

  var refresh = live.throttled(function () {
    return live.getHTML(results.dataset.fragmentUrl).then(function (html) {
      results.innerHTML = html;
    });
  }, 400);

  var polls = 0;
  live.follow({
    path: function () { return "/ws/jobs"; },
    onMessage: refresh,
    onOpen: refresh,
    interval: 3000,
    poll: function () {
      // Without a socket: every 3 s while jobs are moving, every 15 s otherwise.
      var table = document.getElementById("job-table");
      var active = table && table.dataset.anyActive === "1";
      if (active || polls++ % 5 === 0) refresh();
    },
  });
})();
