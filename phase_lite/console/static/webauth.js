// phase auth: hand the Phase CLI its token. Authorise posts to this page (with the session's
// CSRF token), which mints the token and answers it encrypted to the CLI's key; this script
// posts that to the CLI on localhost (the only other place the page's CSP lets it reach). If
// the CLI does not take it, the token is revoked at once, so no unused token stays valid.
"use strict";

(function () {
  const form = document.querySelector("form[data-webauth-form]");
  if (!form) return;
  const csrf = form.querySelector("input[name=csrf_token]").value;
  const ask = document.querySelector("[data-webauth-ask]");
  const progress = document.querySelector("[data-webauth-progress]");
  const CLI_WAIT_MS = 15000;

  function show(selector) {
    ask.hidden = true;
    progress.hidden = true;
    document.querySelector(selector).hidden = false;
  }

  function failed(detail) {
    document.querySelector("[data-webauth-failed-detail]").textContent = detail;
    show("[data-webauth-failed]");
  }

  function post(url, fields) {
    const body = new URLSearchParams(fields);
    body.set("csrf_token", csrf);
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json" }
    });
  }

  function revoke(url) {
    return post(url, { confirmed: "yes" }).then((response) => response.ok, () => false);
  }

  function handToCli(answer) {
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), CLI_WAIT_MS);
    return fetch(answer.target, {
      method: "POST", mode: "cors", credentials: "omit", signal: stop.signal,
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(answer.body)
    }).then((response) => response.ok, () => false).finally(() => clearTimeout(timer));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    form.querySelector("button[type=submit]").disabled = true;
    ask.hidden = true;
    progress.hidden = false;
    post(form.action, {}).then((response) => {
      if (!(response.headers.get("Content-Type") || "").includes("json")) {
        throw new Error("Your session has ended: sign in again, then open the link again. " +
                        "Nothing was created.");
      }
      return response.json().then((answer) => {
        if (!response.ok) throw new Error((answer.error || String(response.status)) +
                                          " Nothing was created.");
        return answer;
      });
    }).then((answer) => handToCli(answer).then((taken) => {
      if (taken) return show("[data-webauth-done]");
      return revoke(answer.revoke).then((revoked) => failed(revoked
        ? "The token made for it was revoked, so nothing usable is left behind."
        : "The token made for it could not be revoked from here: revoke it on your account " +
          "page."));
    })).catch((error) => failed(error.message || "The CLI could not be authorised."));
  });
})();
