"""Another RADIUS implementation (PyPI's pyrad) as the peer in Portvakt's differential
tests of its RADIUS codec.

    pyrad_peer.py request SECRET USER PASSWORD        prints an Access-Request (hex),
                                                      Message-Authenticator first
    pyrad_peer.py verify SECRET REQUEST_HEX REPLY_HEX  prints "ok" if pyrad takes the reply
                                                      (Response Authenticator and a
                                                      Message-Authenticator required)
    pyrad_peer.py ask HOST PORT SECRET USER PASSWORD [STATE_HEX]
                                                      sends an Access-Request as pyrad's
                                                      client does, a Message-Authenticator
                                                      required in the reply; prints the
                                                      reply's code, State (hex, or -) and
                                                      Reply-Message
"""

import os
import sys
import tempfile

from pyrad.client import Client
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


def ask(d):
    host, port = sys.argv[2], int(sys.argv[3])
    secret = sys.argv[4].encode()
    user, password = sys.argv[5], sys.argv[6]
    client = Client(server=host, authport=port, secret=secret, dict=d, retries=1,
                    timeout=10, enforce_ma=True)
    req = client.CreateAuthPacket(code=AccessRequest, User_Name=user)
    req["User-Password"] = req.PwCrypt(password)
    if len(sys.argv) > 7:
        req["State"] = bytes.fromhex(sys.argv[7])
    if not req.message_authenticator:
        req.add_message_authenticator()
    reply = client.SendPacket(req)
    state = reply["State"][0].hex() if "State" in reply else "-"
    message = "".join(reply["Reply-Message"]) if "Reply-Message" in reply else ""
    print(reply.code, state, message)


def main():
    command, secret = sys.argv[1], sys.argv[2].encode()
    d = dictionary()
    if command == "ask":
        ask(d)
        return
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
