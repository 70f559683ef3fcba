// phase_lite console: the look's behaviour (theme switch, copy buttons, confirmation dialogs).
// Every page works without this file: the theme follows the system, copy buttons stay hidden,
// and a destructive form posts to a page that asks first.
(function () {
  "use strict";
  var root = document.documentElement;
  var THEME_KEY = "phase_lite_theme";
  var SVG = "http://www.w3.org/2000/svg";

  function icon(name) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var use = document.createElementNS(SVG, "use");
    use.setAttribute("href", "#i-" + name);
    svg.appendChild(use);
    return svg;
  }

  // -- theme ------------------------------------------------------------------------------
  // Follows the system until switched. The choice is kept in localStorage and in a cookie
  // that the server reads, so that every page is drawn in it from its first byte: no inline
  // script is allowed (Content-Security-Policy), and a script run after the first paint
  // would flash the other theme.
  var system = window.matchMedia("(prefers-color-scheme: dark)");

  function currentTheme() {
    if (root.dataset.theme) return root.dataset.theme;
    return system.matches ? "dark" : "light";
  }

  function remember(theme) {
    try { window.localStorage.setItem(THEME_KEY, theme); } catch (ignored) { /* private mode */ }
    document.cookie = THEME_KEY + "=" + theme + "; path=/; max-age=31536000; samesite=lax";
  }

  var stored = null;
  try { stored = window.localStorage.getItem(THEME_KEY); } catch (ignored) { /* private mode */ }
  if (!root.dataset.theme && (stored === "light" || stored === "dark")) {
    root.dataset.theme = stored;  // the cookie was lost: restore it for the next pages
    remember(stored);
  }

  document.querySelectorAll("[data-theme-switch]").forEach(function (button) {
    var text = button.querySelector(".visually-hidden") || button;
    var use = button.querySelector("use");
    function label() {
      var next = currentTheme() === "dark" ? "light" : "dark";
      text.textContent = "Switch to " + next + " theme";
      button.title = "Switch to " + next + " theme";
      if (use) use.setAttribute("href", next === "dark" ? "#i-moon" : "#i-sun");
    }
    button.hidden = false;
    label();
    system.addEventListener("change", label);
    button.addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      root.dataset.theme = next;
      remember(next);
      label();
    });
  });

  // -- copy -------------------------------------------------------------------------------
  // The exact text: a field's value, else the element's text (line breaks kept).
  function textOf(source) {
    if (source.value !== undefined && source.tagName !== "BUTTON") return source.value;
    return source.textContent;
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }

  function legacyCopy(text) {
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var done = document.execCommand("copy");
      area.remove();
      if (done) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function wireCopy(button, source) {
    if (button.dataset.copyWired) return;
    button.dataset.copyWired = "1";
    button.hidden = false;
    var text = button.querySelector("span");
    button.addEventListener("click", function () {
      var target = source || document.getElementById(button.dataset.copy);
      copyText(textOf(target)).then(function () {
        button.classList.add("done");
        if (text) text.textContent = "Copied";
        window.setTimeout(function () {
          button.classList.remove("done");
          if (text) text.textContent = "Copy";
        }, 2000);
      }, function () {
        if (text) text.textContent = "Copy failed";
      });
    });
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) { wireCopy(button); });

  // Every revealed value gets its own copy button, however it was revealed (with the page,
  // or in place by console.js).
  function nameOf(code) {
    if (code.dataset.copyName) return code.dataset.copyName;
    var row = code.closest("tr");
    var key = row && (row.dataset.key || (row.querySelector("th[scope=row]") || {}).textContent);
    var item = code.closest("li");
    var env = item && item.firstChild && item.firstChild.nodeType === 3 ?
      item.firstChild.nodeValue.replace(/:\s*$/, "").trim() : "";
    var name = key ? "Copy " + key.trim() : "Copy";
    return env ? name + " in " + env : name;
  }

  function addCopyButtons(scope) {
    if (!scope.querySelectorAll) return;
    var found = scope.matches && scope.matches("code.revealed") ? [scope] : [];
    scope.querySelectorAll("code.revealed").forEach(function (code) { found.push(code); });
    found.forEach(function (code) {
      var next = code.nextElementSibling;
      if (next && next.classList.contains("copy")) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.setAttribute("aria-label", nameOf(code));
      button.appendChild(icon("copy"));
      var text = document.createElement("span");
      text.textContent = "Copy";
      text.setAttribute("aria-hidden", "true");
      button.appendChild(text);
      code.after(button);
      wireCopy(button, code);
    });
  }

  addCopyButtons(document.body);
  new MutationObserver(function (changes) {
    changes.forEach(function (change) { change.addedNodes.forEach(addCopyButtons); });
  }).observe(document.body, { childList: true, subtree: true });

  // -- confirmation dialog ----------------------------------------------------------------
  // A destructive form (data-confirm) asks in a dialog; once confirmed it posts with
  // confirmed=yes, which the server needs (without it, the server asks on a page instead).
  var dialog = null;
  var pending = null;

  function makeDialog() {
    dialog = document.createElement("dialog");
    dialog.className = "ask";
    dialog.setAttribute("aria-labelledby", "ask-question");
    var heading = document.createElement("h2");
    heading.id = "ask-question";
    var actions = document.createElement("div");
    actions.className = "form-actions";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    cancel.autofocus = true;
    var confirm = document.createElement("button");
    confirm.type = "button";
    confirm.className = "danger";
    confirm.dataset.askConfirm = "";
    actions.append(cancel, confirm);
    dialog.append(heading, actions);
    document.body.appendChild(dialog);
    cancel.addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () {
      var focus = pending && pending.querySelector("button[type=submit], button:not([type])");
      pending = null;
      if (focus && document.contains(focus)) focus.focus();
    });
    confirm.addEventListener("click", function () {
      var form = pending;
      pending = null;
      dialog.close();
      if (!form.querySelector("input[name=confirmed]")) {
        var confirmed = document.createElement("input");
        confirmed.type = "hidden";
        confirmed.name = "confirmed";
        confirmed.value = "yes";
        form.appendChild(confirmed);
      }
      form.submit();
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-confirm]") || event.defaultPrevented) return;
    if (typeof HTMLDialogElement === "undefined") return;  // the server asks on a page
    event.preventDefault();
    if (!dialog) makeDialog();
    var button = form.querySelector("button[type=submit], button:not([type])");
    var label = button ? (button.querySelector(".visually-hidden") || button).textContent.trim() : "";
    dialog.querySelector("#ask-question").textContent = form.dataset.confirm;
    dialog.querySelector("[data-ask-confirm]").textContent = label || "Confirm";
    pending = form;
    dialog.showModal();
  });
})();
