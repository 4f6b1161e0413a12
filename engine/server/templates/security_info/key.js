// A security key: hands the server's options to the browser (registering a key, or, with
// data-ceremony="get" on the form, signing in with one) and the browser's answer, as
// JSON, back to the server in the form. The server checks everything.
"use strict";
(function () {
  const b64u = {
    decode: (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)),
    encode: (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
  };
  const form = document.getElementById("key-form");
  const button = document.getElementById("key-button");
  const problem = document.getElementById("key-problem");
  const get = form.dataset.ceremony === "get";
  button.addEventListener("click", async () => {
    problem.hidden = true;
    try {
      const options = JSON.parse(document.getElementById("key-options").textContent);
      const publicKey = options.publicKey || options;
      publicKey.challenge = b64u.decode(publicKey.challenge);
      if (publicKey.user) { publicKey.user.id = b64u.decode(publicKey.user.id); }
      for (const list of [publicKey.excludeCredentials, publicKey.allowCredentials]) {
        (list || []).forEach((c) => { c.id = b64u.decode(c.id); });
      }
      const credential = get
        ? await navigator.credentials.get({ publicKey })
        : await navigator.credentials.create({ publicKey });
      const r = credential.response;
      const response = { clientDataJSON: b64u.encode(r.clientDataJSON) };
      if (get) {
        response.authenticatorData = b64u.encode(r.authenticatorData);
        response.signature = b64u.encode(r.signature);
        if (r.userHandle) { response.userHandle = b64u.encode(r.userHandle); }
      } else {
        response.attestationObject = b64u.encode(r.attestationObject);
        response.transports = r.getTransports ? r.getTransports() : [];
      }
      document.getElementById("key-response").value = JSON.stringify({
        id: credential.id,
        rawId: b64u.encode(credential.rawId),
        type: credential.type,
        response,
        clientExtensionResults: credential.getClientExtensionResults(),
      });
      form.submit();
    } catch (e) {
      problem.hidden = false;
    }
  });
})();
