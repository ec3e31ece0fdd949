// The live sessions page: keeps the table current from the server's events (no reload).
// Built with DOM calls and textContent only: nothing from the server becomes markup.
"use strict";
(function () {
  const table = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!table || !window.EventSource) { return; }
  const body = table.tBodies[0];
  const csrf = table.dataset.csrf || null;
  const CELLS = ["user", "target", "door", "node", "client", "since", "idle", "grant"];

  function input(type, name, value) {
    const el = document.createElement("input");
    el.type = type; el.name = name;
    if (value !== undefined) { el.value = value; }
    return el;
  }

  function killForm(id) {
    const form = document.createElement("form");
    form.method = "post"; form.action = "/live/kill"; form.className = "inline kill";
    form.appendChild(input("hidden", "csrf", csrf));
    form.appendChild(input("hidden", "session_id", id));
    const reason = input("text", "reason");
    reason.required = true; reason.placeholder = "reason"; reason.maxLength = 300;
    reason.autocomplete = "off"; reason.setAttribute("aria-label", "reason");
    form.appendChild(reason);
    const button = document.createElement("button");
    button.type = "submit"; button.className = "kill"; button.textContent = "Kill";
    form.appendChild(button);
    return form;
  }

  function lastCell(td, s) {
    if (s.kill_requested) {
      if (td.textContent !== "kill requested" || td.firstElementChild) {
        td.replaceChildren("kill requested");
      }
    } else if (csrf && !td.querySelector("form")) {
      td.replaceChildren(killForm(s.id));  // a reason being typed is never wiped
    }
  }

  function row(s) {
    const tr = document.createElement("tr");
    tr.dataset.session = s.id;
    for (let i = 0; i <= CELLS.length; i++) { tr.appendChild(document.createElement("td")); }
    return tr;
  }

  function show(sessions) {
    const seen = new Set();
    sessions.forEach(function (s, index) {
      seen.add(s.id);
      let tr = Array.from(body.rows).find(function (r) { return r.dataset.session === s.id; });
      if (!tr) { tr = row(s); }
      CELLS.forEach(function (name, i) {
        const text = s[name] === null || s[name] === undefined ? "" : String(s[name]);
        if (tr.cells[i].textContent !== text) { tr.cells[i].textContent = text; }
      });
      lastCell(tr.cells[CELLS.length], s);
      if (body.rows[index] !== tr) { body.insertBefore(tr, body.rows[index] || null); }
    });
    Array.from(body.rows).forEach(function (r) {
      if (!seen.has(r.dataset.session)) { r.remove(); }
    });
    status.textContent = sessions.length ? "Live: " + sessions.length + " open." : "No open sessions.";
  }

  const source = new EventSource(table.dataset.events);
  source.addEventListener("sessions", function (e) { show(JSON.parse(e.data)); });
  source.addEventListener("signedout", function (e) {
    source.close();
    status.textContent = JSON.parse(e.data);
  });
  source.onerror = function () { status.textContent = "Reconnecting..."; };
}());
