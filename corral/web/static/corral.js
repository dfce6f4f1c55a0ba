// corral dashboard: the only script. Pages work without it; it adds
// (1) a live tail of an active run's log, by polling the log API, and
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

  say("Following the log…");
  setTimeout(poll, 500);
})();
