// phase_lite console: small enhancements only; every page works without this file.
(function () {
  "use strict";
  var root = document.documentElement;

  // Theme: follows the system until switched; the choice is remembered in a cookie that the
  // server reads, so the page is drawn in it from the start.
  function currentTheme() {
    if (root.dataset.theme) return root.dataset.theme;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  document.querySelectorAll("[data-theme-switch]").forEach(function (button) {
    button.hidden = false;
    function label() {
      var next = currentTheme() === "dark" ? "light" : "dark";
      button.textContent = "Switch to " + next + " theme";
    }
    label();
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", label);
    button.addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      root.dataset.theme = next;
      document.cookie = "phase_lite_theme=" + next + "; path=/; max-age=31536000; samesite=lax";
      label();
    });
  });

  // Copy buttons.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.dataset.copy);
      var text = source.value !== undefined ? source.value : source.textContent;
      var done = function () { button.textContent = "Copied"; };
      var fallback = function () {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        document.execCommand("copy");
        done();
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
    });
  });

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

  // Confirm in place: without this, the server answers a destructive POST with a page that
  // asks first; once asked here, the form says so.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      if (!form.querySelector("input[name=confirmed]")) {
        var confirmed = document.createElement("input");
        confirmed.type = "hidden";
        confirmed.name = "confirmed";
        confirmed.value = "yes";
        form.appendChild(confirmed);
      }
    });
  });

  // Keys as Phase's console types them: upper case, spaces as underscores (the server
  // refuses what still is no environment variable's name).
  document.querySelectorAll("input[data-key-input]").forEach(function (input) {
    input.addEventListener("input", function () {
      var typed = input.value.toUpperCase().replace(/ /g, "_");
      if (typed === input.value) return;
      var caret = input.selectionStart;
      input.value = typed;
      input.setSelectionRange(caret, caret);
    });
  });

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
