// Solves the signup form's proof-of-work challenge (ALTCHA PoW v2, PBKDF2/SHA-256) with the browser's
// WebCrypto, and puts the answer in the form's hidden "altcha" field. Served by GET /subscribe/altcha.js.
// The form names its challenge in data-challenge (inline JSON) or data-challenge-url (fetched).
// Without this script the form still posts; the signup then waits in the quarantine for a person.
(function () {
  "use strict";
  function toHex(buffer) {
    return Array.from(new Uint8Array(buffer), function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }
  function fromHex(hex) {
    var bytes = new Uint8Array(hex.length / 2);
    for (var i = 0; i < bytes.length; i++) { bytes[i] = parseInt(hex.substr(i * 2, 2), 16); }
    return bytes;
  }
  async function solve(challenge) {
    var p = challenge.parameters, nonce = fromHex(p.nonce), salt = fromHex(p.salt);
    var prefix = p.keyPrefix.toLowerCase();
    var password = new Uint8Array(nonce.length + 4);
    password.set(nonce);
    var view = new DataView(password.buffer);
    for (var counter = 0; counter <= 0xffffffff; counter++) {
      view.setUint32(nonce.length, counter, false);  // the counter as a big-endian uint32 after the nonce
      var key = await crypto.subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
      var bits = await crypto.subtle.deriveBits({name: "PBKDF2", hash: "SHA-256", salt: salt, iterations: p.cost},
                                                key, p.keyLength * 8);
      var derived = toHex(bits);
      if (derived.startsWith(prefix)) { return {counter: counter, derivedKey: derived}; }
    }
    return null;
  }
  async function prove(form, field) {
    var challenge = form.dataset.challenge ? JSON.parse(form.dataset.challenge) : null;
    if (!challenge && form.dataset.challengeUrl) {
      challenge = await (await fetch(form.dataset.challengeUrl, {credentials: "omit"})).json();
    }
    var solution = challenge && await solve(challenge);
    if (solution) { field.value = btoa(JSON.stringify({challenge: challenge, solution: solution})); }
  }
  document.querySelectorAll("form[data-altcha]").forEach(function (form) {
    var field = form.querySelector('input[name="altcha"]');
    if (!field || !window.crypto || !crypto.subtle) { return; }
    var proving = prove(form, field).catch(function () {});
    form.addEventListener("submit", function (event) {
      if (field.value) { return; }
      event.preventDefault();  // wait for the proof (a second or two), then send
      proving.then(function () { form.submit(); });
    });
  });
})();
