"""A software security key made by another implementation (PyPI's soft-webauthn, on
python-fido2 and cryptography), for Portvakt's differential tests.

    soft_key.py STATE create ORIGIN < options.json > credential.json
    soft_key.py STATE get ORIGIN < options.json > assertion.json

Options are Portvakt's JSON (base64url fields); answers are the browser's JSON
(PublicKeyCredential.toJSON()). STATE is a file holding the key between calls.
"""

import base64
import json
import sys

from cryptography.hazmat.primitives import serialization
from soft_webauthn import SoftWebauthnDevice


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64(b):
    return base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")


def save(path, device):
    pem = device.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with open(path, "w") as f:
        json.dump(
            {
                "key": pem.decode("ascii"),
                "credential_id": b64(device.credential_id),
                "rp_id": device.rp_id,
                "user_handle": b64(device.user_handle),
                "sign_count": device.sign_count,
            },
            f,
        )


def load(path):
    with open(path) as f:
        s = json.load(f)
    device = SoftWebauthnDevice()
    device.private_key = serialization.load_pem_private_key(s["key"].encode("ascii"), None)
    device.credential_id = unb64(s["credential_id"])
    device.rp_id = s["rp_id"]
    device.user_handle = unb64(s["user_handle"])
    device.sign_count = s["sign_count"]
    return device


def main():
    state, command, origin = sys.argv[1], sys.argv[2], sys.argv[3]
    options = json.load(sys.stdin)
    public_key = options["publicKey"]
    public_key["challenge"] = unb64(public_key["challenge"])
    if command == "create":
        public_key["user"]["id"] = unb64(public_key["user"]["id"])
        device = SoftWebauthnDevice()
        made = device.create(options, origin)
        response = {
            "clientDataJSON": b64(made["response"]["clientDataJSON"]),
            "attestationObject": b64(made["response"]["attestationObject"]),
        }
    elif command == "get":
        device = load(state)
        made = device.get(options, origin)
        r = made["response"]
        response = {
            "clientDataJSON": b64(r["clientDataJSON"]),
            "authenticatorData": b64(r["authenticatorData"]),
            "signature": b64(r["signature"]),
            "userHandle": b64(r["userHandle"]) if r["userHandle"] else None,
        }
    else:
        sys.exit("usage: soft_key.py STATE create|get ORIGIN < options.json")
    save(state, device)
    json.dump(
        {
            "id": b64(made["rawId"]),
            "rawId": b64(made["rawId"]),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
        },
        sys.stdout,
    )


main()
