// Shared by the dashboard pages: follow a websocket, and fall back to polling when
// there is none (no consumer deployed, a proxy that drops upgrades, a network blip).
// The event log in PostgreSQL is the truth; the socket only makes updates sooner.
window.agentbusLive = (function () {
  "use strict";

  function socketUrl(path) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + path;
  }

  function setIndicator(mode) {
    var el = document.getElementById("live-indicator");
    if (!el) return;
    el.dataset.mode = mode;
    el.textContent = mode === "socket" ? "live" : mode === "polling" ? "live (polling)" : mode;
  }

  // follow({path, onMessage, poll, interval}) opens the socket at path(); while it is
  // not open, poll() runs every `interval` ms. A closed socket is retried with backoff.
  function follow(options) {
    var socket = null;
    var pollTimer = null;
    var retryDelay = 2000;
    var mode = "connecting";

    function startPolling() {
      mode = "polling";
      setIndicator(mode);
      if (pollTimer) return;
      options.poll();
      pollTimer = window.setInterval(function () {
        if (!document.hidden) options.poll();
      }, options.interval || 2000);
    }

    function stopPolling() {
      if (pollTimer) window.clearInterval(pollTimer);
      pollTimer = null;
    }

    function connect() {
      if (!("WebSocket" in window)) return startPolling();
      try {
        socket = new WebSocket(socketUrl(options.path()));
      } catch (e) {
        return startPolling();
      }
      var opened = false;
      var openTimer = window.setTimeout(function () { if (!opened) startPolling(); }, 3000);
      socket.onopen = function () {
        opened = true;
        window.clearTimeout(openTimer);
        retryDelay = 2000;
        stopPolling();
        mode = "socket";
        setIndicator(mode);
        if (options.onOpen) options.onOpen();
      };
      socket.onmessage = function (message) {
        var data;
        try { data = JSON.parse(message.data); } catch (e) { return; }
        options.onMessage(data);
      };
      socket.onclose = function () {
        window.clearTimeout(openTimer);
        socket = null;
        startPolling();
        window.setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      };
    }

    connect();
    return { mode: function () { return mode; } };
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function getHTML(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    });
  }

  // Runs fn at most once per `wait` ms, and never twice at the same time.
  function throttled(fn, wait) {
    var timer = null, running = false, again = false;
    function run() {
      timer = null;
      if (running) { again = true; return; }
      running = true;
      Promise.resolve(fn()).catch(function () {}).then(function () {
        running = false;
        if (again) { again = false; schedule(); }
      });
    }
    function schedule() { if (!timer) timer = window.setTimeout(run, wait); }
    return schedule;
  }

  return { follow: follow, getJSON: getJSON, getHTML: getHTML, throttled: throttled, setIndicator: setIndicator };
})();
