// The replay page: fetch the recording from the API (which chains recording.replayed before
// its first byte), play it in the asciinema player, and seek when a command is clicked.
// No inline script anywhere: this file is the page's only code besides the player itself.
(function () {
  "use strict";
  var box = document.getElementById("player");
  var status = document.getElementById("player-status");
  if (!box || !status || typeof AsciinemaPlayer === "undefined") {
    return;
  }
  var player = null;
  var cast = null;
  var speed = document.getElementById("speed");

  function say(text, kind) {
    status.textContent = text;
    status.className = kind;
  }

  function make(startAt, play) {
    if (player) {
      player.dispose();
    }
    player = AsciinemaPlayer.create({ data: cast }, box, {
      controls: true,
      fit: "width",
      speed: Number(speed.value) || 1,
      startAt: startAt,
      autoPlay: play,
    });
    window.bastionPlayer = player;
  }

  function seek(seconds) {
    player.seek(seconds).then(function () {
      player.play();
    });
  }

  function wire() {
    document.querySelectorAll("button.seek").forEach(function (button) {
      button.addEventListener("click", function () {
        seek(Number(button.dataset.offset));
      });
    });
    document.getElementById("play").addEventListener("click", function () {
      player.play();
    });
    document.getElementById("pause").addEventListener("click", function () {
      player.pause();
    });
    speed.addEventListener("change", function () {
      make(player.getCurrentTime(), true); // the player takes its speed when it is made
    });
  }

  var url = "/api/v1/review/recording?session=" + encodeURIComponent(box.dataset.session);
  fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      return response.json().then(function (body) {
        return { ok: response.ok, body: body };
      });
    })
    .then(function (answer) {
      if (!answer.ok) {
        say(answer.body.error || "the recording could not be opened", "error");
        return;
      }
      var warnings = answer.body.warnings || [];
      say(warnings.length ? "Warning: " + warnings.join("; ") : "Recording opened (the"
        + " viewing is in the audit trail).", warnings.length ? "error" : "notice");
      cast = answer.body.asciicast;
      make(0, false);
      var at = Number(new URLSearchParams(window.location.search).get("at"));
      if (at > 0) {
        player.seek(at); // ?at=SECONDS: a finding's evidence, shown from that moment
      }
      wire();
      box.dataset.ready = "yes";
    })
    .catch(function (problem) {
      say("the recording could not be opened: " + problem, "error");
    });
})();
