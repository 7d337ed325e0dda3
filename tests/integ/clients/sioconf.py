#!/usr/bin/python3
"""sioconf.py - Socket.IO v5 protocol conformance cases (tests/integ/57-*.t).

Written from the Socket.IO v5 protocol and the cases of the official test
suite (socketio/socket.io-protocol, test-suite/test-suite.js), against a
server in its conformance configuration: namespaces "/" and "/custom"; on
connect the server emits "auth" with the handshake auth object; "message"
is answered by "message-back" with the same arguments; "message-with-ack"
is acknowledged with its arguments; an unknown namespace gets CONNECT_ERROR
{"message":"Invalid namespace"}. Also: the Engine.IO layer of the Socket.IO
endpoint (handshake, bad requests, heartbeat, close, upgrade), leaving a
namespace keeps the Engine.IO connection, and a session that never sends a
CONNECT is closed after the connect timeout (1000 ms here).

  sioconf.py cases --port P [--path /ws/socket.io/] [--connect-timeout-ms 1000]
                   [--only REGEX] [--list]

Output as wsconf.py / eioconf.py: "ok - ID desc" / "not ok - ID desc" and
"# " diagnostics with every HTTP exchange and WebSocket frame of a failing
case.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eioconf  # noqa: E402
from eioconf import RS, EioCtx, short  # noqa: E402
from wsconf import CaseFail, run_case_list  # noqa: E402

PH0 = '{"_placeholder":true,"num":0}'
PH1 = '{"_placeholder":true,"num":1}'


class SioCtx(EioCtx):
    connect_timeout_ms = 1000

    def sio_ws(self):
        """An Engine.IO WebSocket session (open packet checked)."""
        ws, v = self.ws_open()
        return ws

    def connect_ns(self, ws, nsp="/", auth=None, send=None):
        """Sends CONNECT; expects 40<nsp,>{"sid":...} then the auth echo.
        Returns the Socket.IO sid."""
        prefix = "" if nsp == "/" else nsp + ","
        if send is None:
            send = "40" + prefix + (json.dumps(auth, separators=(",", ":")) if auth is not None else "")
        self.send(ws, send)
        p = self.recv(ws)
        if p[0] != "text" or not p[1].startswith("40" + prefix + "{"):
            raise CaseFail("CONNECT %s: expected %s{\"sid\":...}, got %r" % (short(send), "40" + prefix, p))
        try:
            hs = json.loads(p[1][2 + len(prefix):])
        except ValueError:
            raise CaseFail("CONNECT reply is not JSON: %s" % short(p[1]))
        if not isinstance(hs, dict) or list(hs) != ["sid"] or not isinstance(hs["sid"], str) or not hs["sid"]:
            raise CaseFail("CONNECT reply payload %s, want exactly {\"sid\": <string>}" % short(p[1]))
        want_auth = "42%s[\"auth\",%s]" % (prefix, json.dumps(auth if auth is not None else {},
                                                              separators=(",", ":")))
        a = self.recv(ws)
        if a != ("text", want_auth):
            raise CaseFail("after CONNECT expected the auth echo %s, got %r" % (want_auth, a))
        return hs["sid"]

    def connected(self, nsp="/"):
        ws = self.sio_ws()
        self.connect_ns(ws, nsp)
        return ws


CASES = []


def case(cid, desc):
    def reg(fn):
        CASES.append((cid, desc, False, fn))
        return fn
    return reg


# ---------------------------------------------------------------- Engine.IO layer of the Socket.IO endpoint

# The heartbeat rounds of hb.*.1 run three ping intervals (~900 ms) without a
# Socket.IO CONNECT, which the 1000 ms connect timeout of this endpoint
# rightly cuts short; they run against the raw Engine.IO endpoint in 56.
_EIO_REUSE = ["hs.poll.1", "hs.poll.3", "hs.poll.4", "hs.poll.5", "hs.poll.6", "hs.poll.7", "hs.poll.8",
              "hs.poll.9", "hs.poll.10", "hs.ws.1", "hs.ws.2", "hs.ws.3", "hs.ws.4", "hs.ws.5", "hs.ws.6",
              "msg.ws.4", "hb.poll.2", "hb.ws.2", "close.poll.1", "close.ws.1",
              "up.1", "up.3", "up.4"]
for _cid, _desc, _echo, _fn in eioconf.CASES:
    if _cid in _EIO_REUSE and not _echo:
        CASES.append(("eio." + _cid, _desc, False, _fn))


# ---------------------------------------------------------------- connect

@case("connect.1", "CONNECT to '/' answered 40{\"sid\"} (only sid), then 42[\"auth\",{}]")
def _(c):
    c.connected("/")


@case("connect.2", "CONNECT with auth payload {\"token\":\"123\"}: auth echoed")
def _(c):
    ws = c.sio_ws()
    c.connect_ns(ws, "/", {"token": "123"})


@case("connect.3", "CONNECT to '/custom,': 40/custom,{\"sid\"} then 42/custom,[\"auth\",{}]")
def _(c):
    ws = c.sio_ws()
    c.connect_ns(ws, "/custom")


@case("connect.4", "CONNECT to /custom with auth {\"token\":\"abc\"}: auth echoed on /custom")
def _(c):
    ws = c.sio_ws()
    c.connect_ns(ws, "/custom", {"token": "abc"})


@case("connect.5", "CONNECT to '/custom' without the trailing comma is accepted as /custom")
def _(c):
    ws = c.sio_ws()
    c.connect_ns(ws, "/custom", send="40/custom")


@case("connect.6", "CONNECT to an unknown namespace: 44/random,{\"message\":\"Invalid namespace\"}")
def _(c):
    ws = c.sio_ws()
    c.send(ws, "40/random")
    c.expect_packets(ws, [("text", '44/random,{"message":"Invalid namespace"}')])


@case("connect.7", "invalid handshake packet '4abc' closes the connection")
def _(c):
    ws = c.sio_ws()
    c.send(ws, "4abc")
    c.expect_ws_closed(ws)


@case("connect.8", "each namespace gets its own sid; two connections get different sids")
def _(c):
    ws = c.sio_ws()
    a = c.connect_ns(ws, "/")
    b = c.connect_ns(ws, "/custom")
    ws2 = c.sio_ws()
    d = c.connect_ns(ws2, "/")
    if len({a, b, d}) != 3:
        raise CaseFail("sids not distinct: / %s, /custom %s, second connection / %s" % (a, b, d))


@case("connect.9", "after an unknown namespace is refused, '/' can still be joined on the same connection")
def _(c):
    ws = c.sio_ws()
    c.send(ws, "40/random")
    c.expect_packets(ws, [("text", '44/random,{"message":"Invalid namespace"}')])
    c.connect_ns(ws, "/")


@case("connect.10", "CONNECT over HTTP long-polling: 40{sid} and the auth echo arrive by GET")
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, '40{"token":"xyz"}')
    got = []
    for _ in range(3):
        got += c.poll(sid)
        if len(got) >= 2:
            break
    if len(got) != 2 or not got[0].startswith('40{"sid":"') or got[1] != '42["auth",{"token":"xyz"}]':
        raise CaseFail("expected 40{\"sid\":...} and 42[\"auth\",{\"token\":\"xyz\"}], got %r" % got)


# ---------------------------------------------------------------- disconnect

@case("disconnect.1", "DISCONNECT '41' from '/' keeps the Engine.IO connection: the next packet is a ping")
def _(c):
    ws = c.connected("/")
    c.send(ws, "41")
    p = c.recv(ws, 1.5, skip_pings=False)
    if p != ("text", "2"):
        raise CaseFail("after 41 expected the next Engine.IO ping '2', got %r" % (p,))
    c.send(ws, "3")
    c.connect_ns(ws, "/")


@case("disconnect.2", "connect /custom, leave it ('41/custom'), then a message on '/' is answered")
def _(c):
    ws = c.connected("/")
    c.connect_ns(ws, "/custom", send="40/custom")
    c.send(ws, "41/custom")
    c.send(ws, '42["message","message to main namespace",1,2]')
    c.expect_packets(ws, [("text", '42["message-back","message to main namespace",1,2]')])


@case("disconnect.3", "after leaving /custom, events sent to /custom get no answer; '/' still works")
def _(c):
    ws = c.connected("/")
    c.connect_ns(ws, "/custom", send="40/custom,")
    c.send(ws, "41/custom,")
    c.send(ws, '42/custom,["message","late"]')
    c.send(ws, '42["message","main"]')
    c.expect_packets(ws, [("text", '42["message-back","main"]')])


@case("disconnect.4", "leaving '/' and staying on '/custom': the connection stays, /custom works")
def _(c):
    ws = c.connected("/")
    c.connect_ns(ws, "/custom")
    c.send(ws, "41")
    c.send(ws, '42/custom,["message","x"]')
    c.expect_packets(ws, [("text", '42/custom,["message-back","x"]')])


# ---------------------------------------------------------------- messages

@case("message.1", "plain event: 42[\"message\",1,\"2\",{\"3\":[true]}] answered with message-back")
def _(c):
    ws = c.connected()
    c.send(ws, '42["message",1,"2",{"3":[true]}]')
    c.expect_packets(ws, [("text", '42["message-back",1,"2",{"3":[true]}]')])


@case("message.2", "event without arguments: 42[\"message\"] answered 42[\"message-back\"]")
def _(c):
    ws = c.connected()
    c.send(ws, '42["message"]')
    c.expect_packets(ws, [("text", '42["message-back"]')])


@case("message.3", "binary event with 2 attachments answered with 452-[\"message-back\",...] and both buffers")
def _(c):
    ws = c.connected()
    c.send(ws, '452-["message",1,%s,%s]' % (PH0, PH1))
    c.send(ws, bytes([1, 2, 3]))
    c.send(ws, bytes([4, 5, 6]))
    c.expect_packets(ws, [("text", '452-["message-back",1,%s,%s]' % (PH0, PH1)),
                          ("binary", bytes([1, 2, 3])), ("binary", bytes([4, 5, 6]))])


@case("message.4", "event with an ack id: 42456[\"message-with-ack\",...] acked 43456[...]")
def _(c):
    ws = c.connected()
    c.send(ws, '42456["message-with-ack",1,"2",{"3":[false]}]')
    c.expect_packets(ws, [("text", '43456[1,"2",{"3":[false]}]')])


@case("message.5", "binary event with an ack: acked by a binary ack 462-789[...] with both buffers")
def _(c):
    ws = c.connected()
    c.send(ws, '452-789["message-with-ack",1,%s,%s]' % (PH0, PH1))
    c.send(ws, bytes([1, 2, 3]))
    c.send(ws, bytes([4, 5, 6]))
    c.expect_packets(ws, [("text", '462-789[1,%s,%s]' % (PH0, PH1)),
                          ("binary", bytes([1, 2, 3])), ("binary", bytes([4, 5, 6]))])


@case("message.6", "events on /custom are answered on /custom")
def _(c):
    ws = c.connected("/")
    c.connect_ns(ws, "/custom")
    c.send(ws, '42/custom,["message","on custom"]')
    c.send(ws, '42/custom,7["message-with-ack","a"]')
    c.expect_packets(ws, [("text", '42/custom,["message-back","on custom"]'),
                          ("text", '43/custom,7["a"]')])


@case("message.7", "binary event on /custom: 451-/custom,[...] answered with the buffer")
def _(c):
    ws = c.connected("/")
    c.connect_ns(ws, "/custom")
    c.send(ws, '451-/custom,["message",%s]' % PH0)
    c.send(ws, b"\x00\xff")
    c.expect_packets(ws, [("text", '451-/custom,["message-back",%s]' % PH0), ("binary", b"\x00\xff")])


@case("message.8", "UTF-8 and escapes in event arguments survive the round trip")
def _(c):
    ws = c.connected()
    c.send(ws, '42["message","h\\u00e9llo \\"w\\" \\n €😀",{"k":null}]')
    p = c.recv(ws)
    want = ["message-back", 'h\u00e9llo "w" \n \u20ac\U0001f600', {"k": None}]
    if p[0] != "text" or not p[1].startswith("42"):
        raise CaseFail("expected a 42 event, got %r" % (p,))
    try:
        v = json.loads(p[1][2:])
    except ValueError:
        raise CaseFail("event payload is not JSON: %s" % short(p[1]))
    if v != want:
        raise CaseFail("got %r, want %r" % (v, want))


@case("message.9", "event and ack over HTTP long-polling")
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "40")
    got = []
    for _ in range(3):
        got += c.poll(sid)
        if len(got) >= 2:
            break
    if len(got) < 2:
        raise CaseFail("CONNECT over polling: got %r" % got)
    c.post_ok(sid, '42["message","hi",1]\x1e421["message-with-ack",true]')
    got = []
    for _ in range(3):
        got += c.poll(sid)
        if len(got) >= 2:
            break
    if got != ['42["message-back","hi",1]', '431[true]']:
        raise CaseFail("expected 42[\"message-back\",\"hi\",1] and 431[true], got %r" % got)


@case("message.10", "binary event over polling (attachment as 'b' + base64) answered the same way")
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "40")
    got = []
    for _ in range(3):
        got += c.poll(sid)
        if len(got) >= 2:
            break
    c.post_ok(sid, '451-["message",%s]%sbAQID' % (PH0, RS))
    got = []
    for _ in range(3):
        got += c.poll(sid)
        if len(got) >= 2:
            break
    if got != ['451-["message-back",%s]' % PH0, "bAQID"]:
        raise CaseFail("expected 451-[\"message-back\",<placeholder>] and bAQID, got %r" % got)


@case("message.11", "after a polling -> WebSocket upgrade the Socket.IO session keeps working")
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "40")
    got = []
    for _ in range(3):
        got += c.poll(sid)
        if len(got) >= 2:
            break
    ws, _ = c.ws_open(sid)
    c.send(ws, "2probe")
    c.expect_packets(ws, [("text", "3probe")])
    c.send(ws, "5")
    c.send(ws, '42["message","upgraded"]')
    c.expect_packets(ws, [("text", '42["message-back","upgraded"]')])


# ---------------------------------------------------------------- invalid packets

@case("invalid.1", "unknown packet type '4abc' after CONNECT closes the connection")
def _(c):
    ws = c.connected()
    c.send(ws, "4abc")
    c.expect_ws_closed(ws)


@case("invalid.2", "event payload not an array '42{}' closes the connection")
def _(c):
    ws = c.connected()
    c.send(ws, "42{}")
    c.expect_ws_closed(ws)


@case("invalid.3", "invalid ack id '42abc[...]' closes the connection")
def _(c):
    ws = c.connected()
    c.send(ws, '42abc["message-with-ack",1,"2",{"3":[false]}]')
    c.expect_ws_closed(ws)


@case("invalid.4", "event whose first element is not a string '42[1,2]' closes the connection")
def _(c):
    ws = c.connected()
    c.send(ws, "42[1,2]")
    c.expect_ws_closed(ws)


@case("invalid.5", "binary event with a placeholder number beyond the attachments closes the connection")
def _(c):
    ws = c.connected()
    c.send(ws, '451-["message",{"_placeholder":true,"num":5}]')
    c.send(ws, b"\x01")
    c.expect_ws_closed(ws)


@case("invalid.6", "truncated JSON '42[\"message\"' closes the connection")
def _(c):
    ws = c.connected()
    c.send(ws, '42["message"')
    c.expect_ws_closed(ws)


# ---------------------------------------------------------------- connect timeout

@case("timeout.1", "no CONNECT over WebSocket: closed after the connect timeout (pings answered meanwhile)")
def _(c):
    t0 = time.monotonic()
    ws = c.sio_ws()
    while True:
        p = c.recv(ws, 3.0)
        if p[0] != "text":
            break
    dt = (time.monotonic() - t0) * 1000
    if p[0] != "closed":
        raise CaseFail("expected the connection closed by the connect timeout, got %r after %d ms" % (p, dt))
    lo, hi = c.connect_timeout_ms - 100, c.connect_timeout_ms + 1000
    if not lo <= dt <= hi:
        raise CaseFail("closed after %d ms, want about %d ms (accepted %d..%d)" % (dt, c.connect_timeout_ms, lo, hi))


@case("timeout.2", "no CONNECT over polling: the session ends after the connect timeout")
def _(c):
    t0 = time.monotonic()
    sid, _ = c.open_polling()
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        r = c.get(sid, timeout=2.0)
        if r.error:
            raise CaseFail("poll failed: %r" % r)
        if r.status == 400:
            break
        packets = r.text.split(RS)
        if "1" in packets:
            break
        for p in packets:
            if p == "2":
                c.post(sid, "3")
    dt = (time.monotonic() - t0) * 1000
    lo, hi = c.connect_timeout_ms - 100, c.connect_timeout_ms + 1000
    if not lo <= dt <= hi:
        raise CaseFail("session ended after %d ms, want about %d ms (accepted %d..%d)" % (
            dt, c.connect_timeout_ms, lo, hi))


@case("timeout.3", "a CONNECT before the timeout keeps the connection past it")
def _(c):
    ws = c.connected()
    end = time.monotonic() + (c.connect_timeout_ms + 500) / 1000.0
    while time.monotonic() < end:
        p = c.recv(ws, max(0.01, end - time.monotonic()))
        if p[0] == "closed":
            raise CaseFail("connected session closed: %r" % (p,))
    c.send(ws, '42["message","still here"]')
    c.expect_packets(ws, [("text", '42["message-back","still here"]')])


@case("timeout.4", "a refused CONNECT (unknown namespace) does not stop the connect timeout")
def _(c):
    t0 = time.monotonic()
    ws = c.sio_ws()
    c.send(ws, "40/random")
    c.expect_packets(ws, [("text", '44/random,{"message":"Invalid namespace"}')])
    while True:
        p = c.recv(ws, 3.0)
        if p[0] != "text":
            break
    dt = (time.monotonic() - t0) * 1000
    if p[0] != "closed" or dt > c.connect_timeout_ms + 1000:
        raise CaseFail("expected a close about %d ms after open, got %r after %d ms" % (c.connect_timeout_ms, p, dt))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    a = sub.add_parser("cases")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--path", default="/ws/socket.io/")
    a.add_argument("--connect-timeout-ms", type=int, default=1000)
    a.add_argument("--only", default=None)
    a.add_argument("--timeout", type=float, default=3.0)
    a.add_argument("--list", action="store_true")
    a.add_argument("--admin-port", type=int, action="append")
    a.add_argument("--after", default=None)
    args = ap.parse_args()
    if args.cmd != "cases":
        ap.print_help()
        return 2
    if args.list:
        for cid, desc, _, _ in CASES:
            print(cid, desc)
        return 0
    ctx = SioCtx(args.port, args.path, args.timeout, echo=False)
    ctx.connect_timeout_ms = args.connect_timeout_ms
    return run_case_list(CASES, ctx, args.only, admin_ports=args.admin_port or (), after=args.after)


if __name__ == "__main__":
    sys.exit(main())
