// corral dashboard: the only script. Pages work without it; it adds
// (1) a live tail of an active run's log, over Server-Sent Events
//     (GET /api/runs/ID/log/stream), polling the log API where EventSource
//     is missing, and
// (2) a confirmation before buttons marked data-confirm.
"use strict";

(function () {
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  var log = document.getElementById("log");
  if (!log || log.dataset.active !== "yes") {
    return;
  }
  var url = log.dataset.tail;
  var offset = Number(log.dataset.offset) || 0;
  var status = document.getElementById("tail-status");
  // Same patterns the server strips: terminal colours and cursor moves.
  var ansi = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function poll() {
    fetch(url + "?offset=" + offset + "&limit=65536", {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (data.size < offset) {
          // The log was capped (its head dropped): start over.
          log.textContent = "";
          offset = 0;
          setTimeout(poll, 0);
          return;
        }
        if (data.text) {
          var follow = atBottom();
          // textContent, never innerHTML: output is shown as text.
          log.appendChild(document.createTextNode(data.text.replace(ansi, "")));
          if (follow) {
            log.scrollTop = log.scrollHeight;
          }
        }
        offset = data.next_offset;
        if (offset < data.size) {
          setTimeout(poll, 0);
        } else if (data.active) {
          say("Following the log (state: " + data.state + ")…");
          setTimeout(poll, 1000);
        } else {
          say("The run ended (" + data.state + "); reloading…");
          setTimeout(function () { window.location.reload(); }, 800);
        }
      })
      .catch(function (error) {
        say("Could not read the log (" + error.message + "); retrying…");
        setTimeout(poll, 3000);
      });
  }

  function append(text) {
    var follow = atBottom();
    // textContent, never innerHTML: output is shown as text.
    log.appendChild(document.createTextNode(text.replace(ansi, "")));
    if (follow) {
      log.scrollTop = log.scrollHeight;
    }
  }

  function stream() {
    // The server resumes from the offset, and after a dropped connection
    // from the Last-Event-ID the browser sends (the next offset).
    var source = new EventSource(log.dataset.stream + "?offset=" + offset);
    source.addEventListener("log", function (event) {
      var data = JSON.parse(event.data);
      if (data.text) {
        append(data.text);
      }
      offset = data.next_offset;
    });
    source.addEventListener("reset", function () {
      log.textContent = "";
      offset = 0;
    });
    source.addEventListener("state", function (event) {
      var data = JSON.parse(event.data);
      log.dataset.state = data.state;
      say(data.active ? "Following the log live (state: " + data.state + ")…" : "The run ended (" + data.state + ").");
    });
    source.addEventListener("end", function (event) {
      var data = JSON.parse(event.data);
      source.close();
      log.dataset.active = "no";
      say("The run ended (" + data.state + "); reloading…");
      setTimeout(function () { window.location.reload(); }, 800);
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        say("Lost the live log; retrying…");
        setTimeout(stream, 3000);
      } else {
        say("Reconnecting to the live log…");
      }
    };
    say("Following the log live…");
  }

  if (window.EventSource && log.dataset.stream) {
    stream();
  } else {
    say("Following the log…");
    setTimeout(poll, 500);
  }
})();
