// What a job's agents say while they say it, growing live in a page: the job page's
// "Live output" card and the review page's. Follows GET /jobs/{id}/stream (Server-Sent
// Events, same-origin session); EventSource resumes by itself with Last-Event-ID after
// a dropped connection, so each piece of text is shown once, in order. A new attempt of
// a task starts its text again (task.attempt), so two attempts' words are never glued.
window.agentbusStream = (function () {
  "use strict";

  // follow(container, url): one <div class="stream"> per task inside `container`.
  function follow(container, url) {
    var tasks = {};
    var source = null;

    function panel(m) {
      var t = tasks[m.task];
      if (t) return t;
      var box = document.createElement("div");
      box.className = "stream";
      box.dataset.task = m.task;
      box.dataset.key = m.key;
      var head = document.createElement("h3");
      var label = document.createElement("span");
      label.className = "stream-key";
      label.textContent = m.key;
      var state = document.createElement("span");
      state.className = "stream-state muted small";
      head.appendChild(label);
      head.appendChild(document.createTextNode(" "));
      head.appendChild(state);
      var text = document.createElement("pre");
      text.className = "stream-text";
      var emits = document.createElement("ul");
      emits.className = "stream-emits muted small";
      box.appendChild(head);
      box.appendChild(text);
      box.appendChild(emits);
      container.appendChild(box);
      var hidden = container.closest("[hidden]");  // the card stays hidden until a task speaks
      if (hidden) hidden.hidden = false;
      t = tasks[m.task] = { box: box, state: state, text: text, emits: emits, attempt: 0, length: 0 };
      return t;
    }

    function setState(t, words) {
      t.state.textContent = words;
      t.box.dataset.state = words;
    }

    function apply(m) {
      if (!m || !m.task) return;
      var t = panel(m);
      if (m.type === "task.attempt" || m.attempt > t.attempt) {
        t.attempt = m.attempt;        // a new attempt: its text starts from nothing
        t.length = 0;
        t.text.textContent = "";
        t.emits.textContent = "";
        t.box.dataset.attempt = m.attempt;
        setState(t, "attempt " + m.attempt + " · writing");
      }
      if (m.attempt < t.attempt) return;  // an older attempt's late words
      if (m.type === "task.snapshot") {   // this attempt's text so far (we resumed past trimmed pieces)
        t.text.textContent = m.text;
        t.length = m.text.length;
      } else if (m.type === "task.delta") {
        if (m.offset < t.length) return;  // already shown
        t.text.appendChild(document.createTextNode(m.text));
        t.length = m.offset + m.text.length;
      } else if (m.type === "task.emit") {
        var note = document.createElement("li");  // beside the text, not inside it
        note.textContent = m.kind + " " + JSON.stringify(m.data);
        t.emits.appendChild(note);
      } else if (m.type === "task.end") {
        setState(t, "attempt " + m.attempt + " · " + String(m.status).replace(/_/g, " "));
      } else if (m.type === "task.abandoned") {
        setState(t, "attempt " + m.attempt + " · abandoned: " + m.reason);
      }
    }

    function open() {
      if (source || !("EventSource" in window)) return;
      source = new EventSource(url);
      ["task.attempt", "task.snapshot", "task.delta", "task.emit", "task.end", "task.abandoned"].forEach(function (type) {
        source.addEventListener(type, function (event) {
          try { apply(JSON.parse(event.data)); } catch (e) { /* not ours */ }
        });
      });
      source.addEventListener("stream.truncated", function () {
        container.dataset.truncated = "1"; // older words were trimmed; the output has them all
      });
      source.addEventListener("stream.done", function () {
        source.close();                      // the job finished: nothing more will come
        source = null;
      });
    }

    open();
    // The job page calls this when a task runs again (a retry from the dashboard).
    return { reopen: open };
  }

  return { follow: follow };
})();
