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

  // Edit in place: a secret's value, comment and tags changed in its row (the environment's
  // list) or its cell (the overview), under the same version check as the full form, which
  // stays for everything else and without script.
  var csrfField = document.querySelector("input[name=csrf_token]");
  var editLinks = document.querySelectorAll("a[href$='/edit']");
  var editorCount = 0;
  editLinks.forEach(function (link) {
    var found = link.getAttribute("href").match(/environments\/([^/]+)\/secrets\/[^/]+\/edit$/);
    if (!found || !csrfField) return;
    var named = link.querySelector(".visually-hidden");
    var keyName = (named ? named.textContent : link.textContent).trim().replace(/^Edit /, "");
    var button = document.createElement("button");
    button.type = "button";
    var hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    if (link.classList.contains("icon-button")) {
      // a row's quiet icon actions (an environment's list): one more of the same kind
      button.className = "icon-button in-place-open";
      button.title = "Edit in place";
      var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("class", "icon");
      svg.setAttribute("aria-hidden", "true");
      svg.setAttribute("focusable", "false");
      var use = document.createElementNS("http://www.w3.org/2000/svg", "use");
      use.setAttribute("href", "#i-inline");
      svg.appendChild(use);
      button.appendChild(svg);
      hidden.textContent = "Edit in place " + keyName;
    } else {
      button.className = "in-place-open";
      button.textContent = "Edit in place";
      hidden.textContent = " " + keyName;
    }
    button.appendChild(hidden);
    link.insertAdjacentElement("afterend", button);
    link.insertAdjacentText("afterend", " ");
    button.addEventListener("click", function () {
      openEditor(link, button, found[1], keyName, link.href.replace(/\/edit$/, "/in-place"));
    });
  });

  function postForm(url, fields) {
    var body = new FormData();
    body.append("csrf_token", csrfField.value);
    Object.keys(fields).forEach(function (name) { body.append(name, fields[name]); });
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    });
  }

  function envVersionHolder(envId) {
    return document.querySelector("[data-env-version][data-env='" + envId + "']");
  }

  // After a write the environment is at a new version: so are this page's other forms.
  function movedOn(envId, version) {
    var holder = envVersionHolder(envId);
    if (holder) holder.dataset.envVersion = version;
    document.querySelectorAll("[href*='env_version='], [action*='env_version=']").forEach(
      function (element) {
        var name = element.hasAttribute("href") ? "href" : "action";
        var url = element.getAttribute(name);
        if (url.indexOf(envId) === -1) return;
        element.setAttribute(name, url.replace(/env_version=\d+/, "env_version=" + version));
      });
  }

  function field(form, label, kind, value) {
    var id = "in-place-" + editorCount + "-" + form.childElementCount;
    var labelElement = document.createElement("label");
    labelElement.htmlFor = id;
    labelElement.textContent = label;
    var input = document.createElement(kind);
    input.id = id;
    if (kind === "textarea") { input.rows = 3; input.className = "mono"; }
    input.spellcheck = false;
    input.value = value;
    form.appendChild(labelElement);
    form.appendChild(input);
    return input;
  }

  function openEditor(link, button, envId, keyName, url) {
    if (button.dataset.open) return;
    button.dataset.open = "yes";
    postForm(url, { step: "open" }).then(function (answer) {
      if (!answer.ok) throw new Error("refused");
      editorCount += 1;
      var current = answer.data;
      var form = document.createElement("form");
      form.className = "in-place";
      form.setAttribute("aria-label", "Edit " + keyName + " in place");
      var value = current.sealed ? null : field(form, "Value of " + keyName, "textarea",
                                                current.value);
      var comment = field(form, "Comment of " + keyName, "input", current.comment);
      var tags = field(form, "Tags of " + keyName, "input", current.tags.join(", "));
      var alert = document.createElement("p");
      alert.className = "error";
      alert.setAttribute("role", "alert");
      alert.hidden = true;
      form.appendChild(alert);
      var actions = document.createElement("div");
      actions.className = "form-actions";
      var save = document.createElement("button");
      save.type = "submit";
      save.className = "primary";
      save.textContent = "Save " + keyName;
      var cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = "Cancel";
      actions.appendChild(save);
      actions.appendChild(cancel);
      form.appendChild(actions);
      var row = link.closest("tr");
      var inList = row && row.closest("table.secrets");
      var holder;
      if (inList) {
        holder = document.createElement("tr");
        holder.className = "in-place-row";
        var cell = document.createElement("td");
        cell.colSpan = row.children.length;
        cell.appendChild(form);
        holder.appendChild(cell);
        row.insertAdjacentElement("afterend", holder);
      } else {
        holder = form;
        link.closest("li").appendChild(form);
      }
      var version = envVersionHolder(envId);
      var opened = String(current.env_version);
      if (version) version.dataset.envVersion = opened;
      function close() {
        holder.remove();
        delete button.dataset.open;
        button.focus();
      }
      cancel.addEventListener("click", close);
      form.addEventListener("keydown", function (event) {
        if (event.key === "Escape") { event.preventDefault(); close(); }
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          form.requestSubmit();
        }
      });
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var fields = { step: "save", comment: comment.value, tags: tags.value,
                       env_version: opened };
        if (value) fields.value = value.value;
        if (form.dataset.confirmReferences) fields.confirm_references = "yes";
        save.disabled = true;
        postForm(url, fields).then(function (saved) {
          save.disabled = false;
          if (!saved.ok) {
            alert.textContent = saved.data.error || "Not saved.";
            alert.hidden = false;
            if (saved.data.unresolved) {  // asked once: the next save saves anyway
              form.dataset.confirmReferences = "yes";
              save.textContent = "Save " + keyName + " anyway";
            }
            return;
          }
          movedOn(envId, saved.data.env_version);
          shownAfterSave(link, inList ? row : link.closest("li"), saved.data);
          close();
        }).catch(function () {
          save.disabled = false;
          alert.textContent = "Not saved: the server could not be reached.";
          alert.hidden = false;
        });
      });
      (value || comment).focus();
    }).catch(function () {
      delete button.dataset.open;
      window.location.href = link.href;  // the full form, then
    });
  }

  function shownAfterSave(link, container, saved) {
    var commentCell = container.querySelector("[data-cell=comment]");
    if (commentCell) commentCell.textContent = saved.comment;
    var tagsCell = container.querySelector("[data-cell=tags]");
    if (tagsCell) {
      tagsCell.textContent = "";
      saved.tags.forEach(function (tag) {
        var badge = document.createElement("span");
        badge.className = "tag";
        badge.textContent = tag;
        tagsCell.appendChild(badge);
        tagsCell.appendChild(document.createTextNode(" "));
      });
    }
    if (saved.value === undefined) return;
    var slot = container.querySelector("td.value") ||
      container.querySelector("[data-value-slot]");
    if (!slot) {
      var written = container.querySelector("code.revealed");
      if (!written) return;
      slot = document.createElement("span");
      written.replaceWith(slot);
    }
    show(slot, saved);
  }

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
