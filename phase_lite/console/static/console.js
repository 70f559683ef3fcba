// phase_lite console: small enhancements only; every page works without this file (the theme
// switch, copy buttons and confirmation dialogs are in ui.js).
(function () {
  "use strict";

  // Reveal in place: the value is fetched when asked for, never sent with the page.
  document.querySelectorAll("form[data-reveal]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "Accept": "application/json" }
      }).then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      }).then(function (found) {
        var id = form.querySelector("input[name=secret]").value;
        var shown = found[id];
        if (!shown) return;
        show(form.closest("[data-value-slot]") || form.closest("td"), shown);
      }).catch(function () { form.submit(); });
    });
  });

  // Reveal a whole overview row: every environment's value, in its slot.
  document.querySelectorAll("form#overview-post").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var button = event.submitter;
      if (!button || !button.hasAttribute("data-reveal-row")) return;
      event.preventDefault();
      var body = new FormData(form);
      body.append(button.name, button.value);
      fetch(form.action, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "Accept": "application/json" }
      }).then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      }).then(function (found) {
        var row = button.closest("tr");
        row.querySelectorAll("[data-value-slot]").forEach(function (slot) {
          var shown = found[slot.dataset.valueSlot];
          if (shown) show(slot, shown);
        });
      }).catch(function () { form.submit(); });
    });
  });

  function show(cell, shown) {
    cell.textContent = "";
    var code = document.createElement("code");
    code.className = "revealed";
    code.textContent = shown.value;
    cell.appendChild(code);
    if (shown.unresolved) {
      var warn = document.createElement("span");
      warn.className = "warn";
      warn.textContent = " unresolved reference";
      cell.appendChild(warn);
    }
    if (shown.override !== null) {
      var note = document.createElement("span");
      note.className = "hint";
      note.textContent = " your override: " + shown.override;
      cell.appendChild(note);
    }
  }

  // Filter the overview's rows by key as you type.
  document.querySelectorAll("[data-filter-table]").forEach(function (form) {
    var table = document.getElementById(form.dataset.filterTable);
    var input = form.querySelector("[data-filter-input]");
    input.addEventListener("input", function () {
      var needle = input.value.trim().toUpperCase();
      table.querySelectorAll("tbody tr[data-key]").forEach(function (row) {
        var revealed = Array.prototype.map.call(row.querySelectorAll("code.revealed"),
          function (code) { return code.textContent.toUpperCase(); });
        row.hidden = needle !== "" && row.dataset.key.toUpperCase().indexOf(needle) === -1 &&
          !revealed.some(function (text) { return text.indexOf(needle) !== -1; });
      });
    });
  });
})();
