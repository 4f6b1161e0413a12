"""Another RADIUS implementation (PyPI's pyrad) as the peer in Portvakt's differential
tests of its RADIUS codec.

    pyrad_peer.py request SECRET USER PASSWORD        prints an Access-Request (hex),
                                                      Message-Authenticator first
    pyrad_peer.py verify SECRET REQUEST_HEX REPLY_HEX  prints "ok" if pyrad takes the reply
                                                      (Response Authenticator and a
                                                      Message-Authenticator required)
"""

import os
import sys
import tempfile

from pyrad.dictionary import Dictionary
from pyrad.packet import AccessRequest, AuthPacket, Packet

DICTIONARY = """
ATTRIBUTE User-Name 1 string
ATTRIBUTE User-Password 2 string
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE Reply-Message 18 string
ATTRIBUTE State 24 octets
ATTRIBUTE Proxy-State 33 octets
ATTRIBUTE Message-Authenticator 80 octets
"""


def dictionary():
    with tempfile.NamedTemporaryFile("w", suffix=".dict", delete=False) as f:
        f.write(DICTIONARY)
    try:
        return Dictionary(f.name)
    finally:
        os.unlink(f.name)


def main():
    command, secret = sys.argv[1], sys.argv[2].encode()
    d = dictionary()
    if command == "request":
        user, password = sys.argv[3], sys.argv[4]
        req = AuthPacket(code=AccessRequest, secret=secret, dict=d)
        req.add_message_authenticator()
        req["User-Name"] = user
        req["User-Password"] = req.PwCrypt(password)
        req["NAS-IP-Address"] = "192.0.2.10"
        print(req.RequestPacket().hex())
    elif command == "verify":
        raw_request = bytes.fromhex(sys.argv[3])
        raw_reply = bytes.fromhex(sys.argv[4])
        req = AuthPacket(secret=secret, dict=d, packet=raw_request)
        reply = Packet(secret=secret, dict=d, packet=raw_reply)
        print("ok" if req.VerifyReply(reply, raw_reply, enforce_ma=True) else "bad")
    else:
        sys.exit(__doc__)


main()
