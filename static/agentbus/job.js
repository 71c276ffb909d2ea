// The job page (/app/jobs/{id}): follows the job's event log and redraws.
//
// Each event patches the graph node and the status badge at once and is appended to
// the event log; then the page asks the server for its live regions (graph, timeline,
// tasks, result) and swaps them in, so what is shown is always what PostgreSQL says.
// Events are applied in seq order exactly once: a gap is filled from GET /jobs/{id}/events.
(function () {
  "use strict";
  var live = window.agentbusLive;
  var data = JSON.parse(document.getElementById("job-data").textContent);
  var lastSeq = data.last_seq;
  var keys = data.keys || {};
  var log = document.getElementById("event-log");
  // The agents' text as they write it (stream.js, over GET /jobs/{id}/stream).
  var streamCard = document.getElementById("live-output-card");
  var streamView = streamCard && window.agentbusStream ?
    window.agentbusStream.follow(document.getElementById("live-output"), streamCard.dataset.streamUrl) : null;

  function statusLabel(status) { return String(status || "").replace(/_/g, " "); }

  function describe(e) {
    var key = e.key || keys[e.task] || "";
    if (e.type === "job.status") return "job " + e.status + (e.error ? ": " + e.error : "");
    if (e.type === "task.progress") {
      var pct = typeof e.progress === "number" ? " " + Math.round(e.progress * 100) + "%" : "";
      return (key + " progress" + pct + " " + (e.message || "")).trim();
    }
    if (e.type === "task.retry") {
      return key + " attempt " + e.attempt + " failed, retry in " + e.retry_in + "s: " + (e.error || "");
    }
    var text = (key + " " + (e.status || e.type)).trim();
    if (e.attempt && (e.status === "queued" || e.status === "running")) text += " (attempt " + e.attempt + ")";
    if (e.error && (e.status === "failed" || e.status === "skipped")) text += ": " + e.error;
    return text;
  }

  function appendLog(e) {
    var li = document.createElement("li");
    li.dataset.seq = e.seq;
    li.className = "fresh";
    var seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = "#" + e.seq;
    var what = document.createElement("span");
    what.className = "what";
    what.appendChild(document.createTextNode(describe(e)));
    what.appendChild(document.createElement("br"));
    var when = document.createElement("span");
    when.className = "when";
    when.textContent = String(e.at || "").slice(11, 23) + " · " + e.type;
    what.appendChild(when);
    li.appendChild(seq);
    li.appendChild(what);
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(li);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function setStatusClass(el, status) {
    // getAttribute works for HTML and SVG elements alike (an SVG className is not a string).
    el.setAttribute("class", (el.getAttribute("class") || "").replace(/\bst-[a-z_]+/, "st-" + status));
    el.dataset.status = status;
  }

  function patch(e) {
    if (e.type === "job.status" && e.status) {
      var badge = document.getElementById("job-status");
      if (badge) { setStatusClass(badge, e.status); badge.textContent = statusLabel(e.status); }
      data.finished = ["succeeded", "failed", "cancelled"].indexOf(e.status) >= 0;
    }
    if (e.task && e.key) keys[e.task] = e.key;
    // A task running again after the stream ended (a retry from this page): follow anew.
    if (streamView && e.type === "task.status" && e.status === "running") streamView.reopen();
    if ((e.type === "task.status" || e.type === "task.retry") && e.status) {
      var node = document.querySelector('#task-graph .node[data-task-id="' + e.task + '"]') ||
        (e.key && document.querySelector('#task-graph .node[data-key="' + CSS.escape(e.key) + '"]'));
      if (node) {
        setStatusClass(node, e.status);
        var label = node.querySelector(".node-status");
        if (label) label.textContent = statusLabel(e.status);
        var edgeState = e.status === "succeeded" ? "ready" :
          ["failed", "skipped", "cancelled"].indexOf(e.status) >= 0 ? "blocked" : "";
        document.querySelectorAll('#task-graph .edge[data-from="' + CSS.escape(node.dataset.key) + '"]').forEach(function (edge) {
          edge.setAttribute("class", ("edge " + edgeState).trim());
        });
      }
    }
    var seqEl = document.getElementById("job-last-seq");
    if (seqEl) seqEl.textContent = e.seq;
  }

  // Swap in the server's rendering of every live region, keeping open task panels open.
  var redraw = live.throttled(function () {
    return live.getHTML(window.location.pathname + "?fragment=live").then(function (html) {
      var open = {};
      document.querySelectorAll(".tasks details[open]").forEach(function (d) { open[d.id] = true; });
      var mode = (document.getElementById("live-indicator") || {}).dataset;
      mode = mode ? mode.mode : "connecting";
      var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
      doc.querySelectorAll("[data-region]").forEach(function (fresh) {
        var current = document.querySelector('[data-region="' + fresh.dataset.region + '"]');
        if (current) current.replaceWith(document.importNode(fresh, true));
      });
      document.querySelectorAll(".tasks details").forEach(function (d) {
        if (open[d.id]) { d.open = true; loadBody(d); }
      });
      live.setIndicator(mode);
    });
  }, Math.min(2000, 300 + 5 * Object.keys(keys).length)); // a big job redraws less often

  // A large job's task details are fetched when a task is opened (and again after a
  // redraw while it stays open).
  function loadBody(details) {
    var body = details.querySelector(".task-body[data-lazy]");
    if (!body || body.dataset.loading) return;
    body.dataset.loading = "1";
    live.getHTML(body.dataset.lazy).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.querySelector(".task-body");
      if (fresh) body.replaceWith(document.importNode(fresh, true));
    }).catch(function () { delete body.dataset.loading; });
  }
  document.addEventListener("toggle", function (event) {
    if (event.target.matches && event.target.matches(".tasks details") && event.target.open) loadBody(event.target);
  }, true);

  var catchingUp = false;
  function catchUp() {
    if (catchingUp) return Promise.resolve();
    catchingUp = true;
    return live.getJSON(data.events_url + "?after=" + lastSeq).then(function (body) {
      body.events.forEach(apply);
    }).finally(function () { catchingUp = false; });
  }

  function apply(e) {
    if (typeof e.seq !== "number" || e.seq <= lastSeq) return; // a replay we already have
    if (e.seq > lastSeq + 1) { catchUp(); return; }             // a gap: read it from the log
    lastSeq = e.seq;
    appendLog(e);
    patch(e);
    redraw();
  }

  function receive(message) {
    // One event per message; arrays and {"events": [...]} batches are accepted too.
    if (Array.isArray(message)) return message.forEach(receive);
    if (message && Array.isArray(message.events)) return message.events.forEach(receive);
    if (message && typeof message.seq === "number") apply(message);
  }

  log.scrollTop = log.scrollHeight;
  var idlePolls = 0;
  live.follow({
    path: function () { return data.socket_path + "?after=" + lastSeq; },
    onMessage: receive,
    interval: 2000,
    poll: function () {
      // A finished job rarely changes (a retry from another tab); look less often.
      if (data.finished && idlePolls++ % 5 !== 0) return;
      catchUp().catch(function () {});
    },
  });
})();
