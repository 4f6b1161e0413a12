// Registers a security key: hands the server's options to the browser, and the browser's
// answer, as JSON, back to the server in the form. The server checks everything.
"use strict";
(function () {
  const b64u = {
    decode: (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)),
    encode: (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
  };
  const button = document.getElementById("key-button");
  const problem = document.getElementById("key-problem");
  button.addEventListener("click", async () => {
    problem.hidden = true;
    try {
      const options = JSON.parse(document.getElementById("key-options").textContent);
      const publicKey = options.publicKey || options;
      publicKey.challenge = b64u.decode(publicKey.challenge);
      publicKey.user.id = b64u.decode(publicKey.user.id);
      (publicKey.excludeCredentials || []).forEach((c) => { c.id = b64u.decode(c.id); });
      const credential = await navigator.credentials.create({ publicKey });
      const r = credential.response;
      document.getElementById("key-response").value = JSON.stringify({
        id: credential.id,
        rawId: b64u.encode(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: b64u.encode(r.clientDataJSON),
          attestationObject: b64u.encode(r.attestationObject),
          transports: r.getTransports ? r.getTransports() : [],
        },
        clientExtensionResults: credential.getClientExtensionResults(),
      });
      document.getElementById("key-form").submit();
    } catch (e) {
      problem.hidden = false;
    }
  });
})();
