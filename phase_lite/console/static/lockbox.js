// Lockbox: the value is encrypted and decrypted here, in the browser, with XChaCha20-Poly1305
// from the vendored @noble/ciphers (pure JavaScript: it also works on a plain-HTTP LAN, where
// WebCrypto's subtle API is not available). The key is 32 bytes from crypto.getRandomValues,
// carried only in the link's fragment, which browsers never send to a server.
//
// Ciphertext sent and stored, base64url without padding:
//   nonce (24, random) || XChaCha20-Poly1305(key, nonce, UTF-8 value, aad) || tag (16)
//   aad = "phase_lite/lockbox/v1"
import { xchacha20poly1305 } from "./vendor/noble-ciphers/chacha.js";
import { randomBytes } from "./vendor/noble-ciphers/utils.js";

const AAD = new TextEncoder().encode("phase_lite/lockbox/v1");
const NONCE_BYTES = 24;
const KEY_BYTES = 32;

function toBase64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function encrypt(value) {
  const key = randomBytes(KEY_BYTES);
  const nonce = randomBytes(NONCE_BYTES);
  const sealed = xchacha20poly1305(key, nonce, AAD).encrypt(new TextEncoder().encode(value));
  const joined = new Uint8Array(NONCE_BYTES + sealed.length);
  joined.set(nonce);
  joined.set(sealed, NONCE_BYTES);
  return { key: toBase64url(key), ciphertext: toBase64url(joined) };
}

function decrypt(keyText, ciphertextText) {
  const key = fromBase64url(keyText);
  const joined = fromBase64url(ciphertextText);
  const cipher = xchacha20poly1305(key, joined.subarray(0, NONCE_BYTES), AAD);
  return new TextDecoder("utf-8", { fatal: true }).decode(
    cipher.decrypt(joined.subarray(NONCE_BYTES)));
}

function showError(message) {
  const box = document.querySelector("[data-share-error]");
  box.textContent = message;
  box.hidden = false;
}

// -- the share form ----------------------------------------------------------------------------

const form = document.querySelector("form[data-lockbox-create]");
if (form) {
  const choice = form.querySelector("[data-expiry-choice]");
  const custom = form.querySelector("[data-custom-expiry]");
  const expiresAt = form.querySelector("[data-expires-at]");
  const showCustom = () => {
    custom.hidden = choice.value !== "custom";
    expiresAt.required = !custom.hidden;
  };
  choice.addEventListener("change", showCustom);
  showCustom();  // a choice made before this module ran (or restored by the browser) counts

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    document.querySelector("[data-share-error]").hidden = true;
    let seconds = Number(choice.value);
    if (choice.value === "custom") {
      seconds = Math.round((new Date(expiresAt.value).getTime() - Date.now()) / 1000);
      if (!(seconds >= Number(form.dataset.minExpiry) &&
            seconds <= Number(form.dataset.maxExpiry))) {
        showError("Choose a time between a minute and 90 days from now.");
        return;
      }
    }
    const valueField = document.getElementById("share-value");
    const sealed = encrypt(valueField.value);
    const body = new URLSearchParams();
    body.set("csrf_token", form.querySelector("input[name=csrf_token]").value);
    body.set("ciphertext", sealed.ciphertext);
    body.set("expires_in", String(seconds));
    body.set("views", form.querySelector("input[name=views]").value);
    fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then((response) => {
      if (!(response.headers.get("Content-Type") || "").includes("json")) {
        // Sent to the sign-in page: the session ended while the form was open.
        throw new Error("Your session has ended: sign in again in another tab, then press " +
                        "Create link again.");
      }
      return response.json().then((answer) => ({ response: response, answer: answer }));
    }).then(({ response, answer }) => {
      if (!response.ok) throw new Error(answer.error || String(response.status));
      const link = document.getElementById("share-link");
      link.value = answer.url + "#" + sealed.key;  // the server's public URL, or this page's
      const views = answer.views === 1 ? "1 view" : answer.views + " views";
      document.querySelector("[data-share-summary]").textContent =
        "Opens for " + views + ", until " + new Date(answer.expiresAt).toLocaleString() + ".";
      document.querySelector("[data-share-result]").hidden = false;
      valueField.value = "";
      link.focus();
      link.select();
    }).catch((error) => showError(error.message || "The share could not be created."));
  });
}

// -- the page a link opens ---------------------------------------------------------------------

const reveal = document.querySelector("[data-lockbox-reveal]");
if (reveal) {
  const key = location.hash.slice(1);
  const gone = () => {
    document.querySelectorAll("[data-share-page] > :not([data-share-gone])")
      .forEach((element) => { element.hidden = true; });
    document.querySelector("[data-share-gone]").hidden = false;
  };
  if (!/^[A-Za-z0-9_-]{43}$/.test(key)) {
    showError("This link is not whole: its key (the part after #) is missing or cut. " +
              "Nothing was revealed and no view was counted.");
  } else {
    reveal.hidden = false;
  }
  reveal.addEventListener("click", () => {
    reveal.disabled = true;
    fetch(location.pathname, {
      method: "POST", credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then((response) => {
      if (response.status === 404) return gone();
      return response.json().then((answer) => {
        if (!response.ok) throw new Error(answer.error || String(response.status));
        let value;
        try {
          value = decrypt(key, answer.ciphertext);
        } catch (error) {
          throw new Error("The key in this link does not open this share: was the link " +
                          "copied whole?");
        }
        reveal.hidden = true;
        // The key leaves the address bar (and the history) once it has been used.
        history.replaceState(null, "", location.pathname);
        // As the field's text, not only its value: the page then reads as it shows (find in
        // page, assistive tools and tests that look for text see the revealed value).
        document.getElementById("shared-value").textContent = value;
        document.querySelector("[data-share-views]").textContent = answer.viewsLeft === 0
          ? "That was the last view: the value is now deleted from the server."
          : "Views left: " + answer.viewsLeft + ".";
        document.querySelector("[data-share-value]").hidden = false;
      });
    }).catch((error) => {
      reveal.disabled = false;
      showError(error.message || "The share could not be opened.");
    });
  });
}
