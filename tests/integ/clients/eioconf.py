#!/usr/bin/python3
"""eioconf.py - Engine.IO v4 protocol conformance cases (tests/integ/56-*.t).

Written from the Engine.IO v4 protocol and the cases of the official test
suite (socketio/engine.io-protocol, test-suite/test-suite.js): handshake over
HTTP long-polling and WebSocket with the exact open packet, refused bad
requests (HTTP 400 with a JSON {code, message} body), polling payloads
(packets joined by \\x1e, binary as "b" + base64), heartbeat with
pingInterval 300 ms / pingTimeout 200 ms, close, and the upgrade from
polling to WebSocket (probe, noop, upgrade).

Everything is sent by hand: HTTP/1.1 over plain sockets (so a request can
be aborted half-way) and WebSocket through wsconf.WSClient.

  eioconf.py cases --port P [--path /engine.io/] [--only REGEX] [--list]

Prints "ok - ID desc" / "not ok - ID desc" and "# " diagnostics with the
HTTP exchanges and WebSocket frames of a failing case. The server at --path
must echo every message packet (the gateway's conformance mode).

Also imported by sioconf.py (the same Engine.IO cases on the Socket.IO path).
"""

import argparse
import base64
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsconf import (OP_BIN, OP_TEXT, CaseFail, HandshakeError, WSClient,  # noqa: E402
                    build_frame, run_case_list)

RS = "\x1e"
PING_INTERVAL = 300
PING_TIMEOUT = 200
MAX_PAYLOAD = 1000000
OPEN_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}


def short(b, n=200):
    if isinstance(b, (bytes, bytearray)):
        try:
            s = bytes(b).decode("utf-8")
        except UnicodeDecodeError:
            return "binary %s" % bytes(b)[:n // 3].hex(" ")
    else:
        s = b
    return repr(s[:n] + ("..." if len(s) > n else ""))


class Resp:
    def __init__(self, status=None, headers=None, body=b"", error=None, ms=0):
        self.status, self.headers, self.body, self.error, self.ms = status, headers or {}, body, error, ms

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        if self.error:
            return "<no response: %s>" % self.error
        return "<%s %s>" % (self.status, short(self.body))


def http_request(port, method, target, body=None, headers=None, timeout=3.0, host="127.0.0.1"):
    """One HTTP/1.1 request on its own connection (Connection: close)."""
    t0 = time.monotonic()
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s:%d" % (host, port), "Connection: close"]
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "text/plain;charset=UTF-8")
        hdrs["Content-Length"] = str(len(body))
    for k, v in hdrs.items():
        lines.append("%s: %s" % (k, v))
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        return Resp(error="connect: %s" % e)
    try:
        s.settimeout(timeout)
        s.sendall(raw)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                return Resp(error="timeout waiting for the response head (%d ms)" % (timeout * 1000),
                            ms=(time.monotonic() - t0) * 1000)
            c = s.recv(65536)
            if not c:
                return Resp(error="connection closed before a response (got %r)" % buf[:100],
                            ms=(time.monotonic() - t0) * 1000)
            buf += c
        head, rest = buf.split(b"\r\n\r\n", 1)
        hl = head.decode("latin-1").split("\r\n")
        try:
            status = int(hl[0].split()[1])
        except (IndexError, ValueError):
            return Resp(error="bad status line %r" % hl[0])
        h = {}
        for ln in hl[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                h[k.strip().lower()] = v.strip()
        if "content-length" in h:
            n = int(h["content-length"])
            while len(rest) < n:
                if time.monotonic() > deadline:
                    return Resp(status, h, rest, error="timeout in the body")
                c = s.recv(65536)
                if not c:
                    break
                rest += c
            body_out = rest[:n]
        elif h.get("transfer-encoding", "").lower() == "chunked":
            body_out = b""
            while True:
                while b"\r\n" not in rest:
                    c = s.recv(65536)
                    if not c:
                        return Resp(status, h, body_out, error="chunked body cut")
                    rest += c
                line, rest = rest.split(b"\r\n", 1)
                n = int(line.split(b";")[0], 16)
                while len(rest) < n + 2:
                    c = s.recv(65536)
                    if not c:
                        return Resp(status, h, body_out, error="chunked body cut")
                    rest += c
                body_out += rest[:n]
                rest = rest[n + 2:]
                if n == 0:
                    break
        else:
            while True:
                if time.monotonic() > deadline:
                    break
                c = s.recv(65536)
                if not c:
                    break
                rest += c
            body_out = rest
        return Resp(status, h, body_out, ms=(time.monotonic() - t0) * 1000)
    except socket.timeout:
        return Resp(error="timeout (%d ms)" % (timeout * 1000), ms=(time.monotonic() - t0) * 1000)
    except OSError as e:
        return Resp(error="%s: %s" % (e.__class__.__name__, e), ms=(time.monotonic() - t0) * 1000)
    finally:
        s.close()


class Background:
    """Runs a function in a thread; .get() joins and returns its result."""

    def __init__(self, fn, *a, **kw):
        self.result = None
        self.t = threading.Thread(target=self._run, args=(fn, a, kw), daemon=True)
        self.t.start()

    def _run(self, fn, a, kw):
        self.result = fn(*a, **kw)

    def get(self, timeout=10):
        self.t.join(timeout)
        return self.result


class EioCtx:
    """Per-run state: the endpoint, a transcript of HTTP exchanges and the
    WebSocket clients of the current case (for diagnostics)."""

    def __init__(self, port, path="/engine.io/", timeout=3.0, echo=True):
        self.port, self.path, self.timeout, self.echo = port, path, timeout, echo
        self.log = []
        self.clients = []
        self.lock = threading.Lock()

    # ---- runner interface
    def begin(self):
        self.log, self.clients = [], []

    def diag_lines(self):
        out = list(self.log[-30:])
        if len(self.log) > 30:
            out.insert(0, "(%d earlier HTTP exchanges not shown)" % (len(self.log) - 30))
        for i, ws in enumerate(self.clients):
            out += ["[ws %d %s] %s" % (i + 1, ws.path, line) for line in ws.describe()]
        return out

    def end(self):
        for ws in self.clients:
            ws.close_tcp()
        self.clients = []

    # ---- HTTP
    def query(self, transport="polling", sid=None, eio="4", extra=None):
        parts = []
        if eio is not None:
            parts.append("EIO=%s" % eio)
        if transport is not None:
            parts.append("transport=%s" % transport)
        if sid is not None:
            parts.append("sid=%s" % sid)
        if extra:
            parts.append(extra)
        return self.path + "?" + "&".join(parts)

    def http(self, method, target, body=None, headers=None, timeout=None):
        r = http_request(self.port, method, target, body, headers, timeout or self.timeout)
        with self.lock:
            self.log.append("%s %s%s -> %s%s (%d ms)" % (
                method, target, " body=%s" % short(body, 80) if body is not None else "",
                r.status if not r.error else "ERROR", " %s" % short(r.body, 160) if not r.error else
                " " + r.error, r.ms))
        return r

    def get(self, sid, timeout=None, extra=None):
        return self.http("GET", self.query(sid=sid, extra=extra), timeout=timeout)

    def post(self, sid, body, timeout=None):
        return self.http("POST", self.query(sid=sid), body=body, timeout=timeout)

    # ---- Engine.IO helpers
    def check_open(self, text, upgrades):
        """The open packet: '0' + JSON with exactly the five fields."""
        if not text.startswith("0"):
            raise CaseFail("open packet must start with '0', got %s" % short(text))
        try:
            v = json.loads(text[1:])
        except ValueError:
            raise CaseFail("open packet is not JSON: %s" % short(text))
        if not isinstance(v, dict) or set(v) != OPEN_KEYS:
            raise CaseFail("open packet keys %s, want exactly %s" % (
                sorted(v) if isinstance(v, dict) else type(v).__name__, sorted(OPEN_KEYS)))
        errs = []
        if not isinstance(v["sid"], str) or not v["sid"]:
            errs.append("sid %r is not a non-empty string" % (v["sid"],))
        if v["upgrades"] != upgrades:
            errs.append("upgrades %r, want %r" % (v["upgrades"], upgrades))
        if v["pingInterval"] != PING_INTERVAL or type(v["pingInterval"]) is not int:
            errs.append("pingInterval %r, want %d" % (v["pingInterval"], PING_INTERVAL))
        if v["pingTimeout"] != PING_TIMEOUT or type(v["pingTimeout"]) is not int:
            errs.append("pingTimeout %r, want %d" % (v["pingTimeout"], PING_TIMEOUT))
        if v["maxPayload"] != MAX_PAYLOAD or type(v["maxPayload"]) is not int:
            errs.append("maxPayload %r, want %d" % (v["maxPayload"], MAX_PAYLOAD))
        if errs:
            raise CaseFail("open packet %s: %s" % (short(text), "; ".join(errs)))
        return v

    def open_polling(self):
        r = self.get(None)
        if r.error or r.status != 200:
            raise CaseFail("polling handshake: %r" % r)
        packets = r.text.split(RS)
        v = self.check_open(packets[0], ["websocket"])
        return v["sid"], r

    def poll(self, sid, skip_pings=True, tries=4, timeout=None):
        """GET; returns the packets of the body. With skip_pings, ping
        packets are answered ("3") and removed; an all-ping body polls
        again."""
        for _ in range(tries):
            r = self.get(sid, timeout=timeout)
            if r.error or r.status != 200:
                raise CaseFail("poll for sid %s: %r" % (sid, r))
            packets = r.text.split(RS)
            if not skip_pings:
                return packets
            rest = [p for p in packets if p != "2"]
            for _ in range(len(packets) - len(rest)):
                self.post(sid, "3")
            if rest:
                return rest
        raise CaseFail("only pings in %d polls" % tries)

    def post_ok(self, sid, body):
        r = self.post(sid, body)
        if r.error or r.status != 200 or r.text != "ok":
            raise CaseFail("POST %s: expected 200 'ok', got %r" % (short(body, 80), r))
        return r

    def expect_400_json(self, r, what):
        """A refused request: HTTP 400 with a JSON body {code: int, message: str}."""
        if r.error:
            raise CaseFail("%s: expected HTTP 400, got %r" % (what, r))
        if r.status != 400:
            raise CaseFail("%s: expected HTTP 400, got %r" % (what, r))
        try:
            v = json.loads(r.body)
        except ValueError:
            raise CaseFail("%s: 400 body is not JSON {code, message}: %s" % (what, short(r.body)))
        if not isinstance(v, dict) or type(v.get("code")) is not int or not isinstance(v.get("message"), str) \
                or not v.get("message"):
            raise CaseFail("%s: 400 body %s lacks an integer code and a message string" % (what, short(r.body)))
        return v

    # ---- WebSocket helpers
    def ws_connect(self, target, expect_101=True):
        ws = WSClient(self.port, target, timeout=self.timeout)
        self.clients.append(ws)
        try:
            ws.connect_tcp()
            st = ws.handshake(expect_101=expect_101)
        except (HandshakeError, OSError) as e:
            raise CaseFail("WebSocket upgrade of %s: %s" % (target, e))
        return ws, st

    def ws_open(self, sid=None):
        """A WebSocket Engine.IO connection; without sid, reads and checks
        the open packet and returns (ws, open_value)."""
        ws, _ = self.ws_connect(self.query("websocket", sid))
        if sid is not None:
            return ws, None
        p = self.recv(ws, skip_pings=False)
        if p[0] != "text":
            raise CaseFail("expected the open packet, got %r" % (p,))
        return ws, self.check_open(p[1], [])

    def recv(self, ws, timeout=None, skip_pings=True):
        """The next Engine.IO packet: ('text', str), ('binary', bytes),
        ('closed', how) or ('timeout', None). Pings are answered with a
        pong and skipped unless skip_pings is False."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            e = ws.next_event(max(0.0, deadline - time.monotonic()))
            if e.kind == "text":
                try:
                    t = e.data.decode("utf-8")
                except UnicodeDecodeError:
                    raise CaseFail("text frame is not UTF-8: %r" % e)
                if skip_pings and t == "2":
                    ws.send(build_frame(OP_TEXT, b"3"), "pong 3")
                    continue
                return ("text", t)
            if e.kind == "binary":
                return ("binary", e.data)
            if e.kind in ("ping", "pong"):
                continue
            if e.kind == "timeout":
                return ("timeout", None)
            if e.kind == "close":
                return ("closed", "close frame %s" % e.code)
            return ("closed", repr(e))

    def send(self, ws, data):
        if isinstance(data, str):
            ws.send(build_frame(OP_TEXT, data.encode()), "text %s" % short(data, 60))
        else:
            ws.send(build_frame(OP_BIN, data), "binary %s" % bytes(data)[:20].hex(" "))

    def expect_packets(self, ws, want, timeout=None, skip_pings=True):
        got = []
        for w in want:
            p = self.recv(ws, timeout, skip_pings)
            got.append(p)
            if p != w:
                raise CaseFail("expected %r, got %r (before it: %r)" % (w, p, got[:-1]))
        return got

    def expect_ws_closed(self, ws, timeout=None, what="the session"):
        """The server must end the WebSocket (close frame or TCP close)
        without sending other packets; pings are tolerated."""
        p = self.recv(ws, timeout or self.timeout)
        if p[0] != "closed":
            raise CaseFail("expected %s to be closed, got %r" % (what, p))
        return p

    def probe_ws(self, ws):
        """The session works over this WebSocket: echo (Engine.IO echo
        endpoint) or a Socket.IO CONNECT answered (Socket.IO endpoint)."""
        if self.echo:
            self.send(ws, "4hello")
            self.expect_packets(ws, [("text", "4hello")])
        else:
            self.send(ws, "40")
            p = self.recv(ws)
            if p[0] != "text" or not p[1].startswith("40{"):
                raise CaseFail("Socket.IO CONNECT over the upgraded WebSocket: expected 40{...}, got %r" % (p,))


# =====================================================================
# the cases; flag "echo": needs the echo endpoint

CASES = []


def case(cid, desc, echo=False):
    def reg(fn):
        CASES.append((cid, desc, echo, fn))
        return fn
    return reg


# ---------------------------------------------------------------- handshake

@case("hs.poll.1", "polling handshake: 200, open packet with exactly sid/upgrades/pingInterval/pingTimeout/maxPayload")
def _(c):
    r = c.get(None)
    if r.error or r.status != 200:
        raise CaseFail("expected 200, got %r" % r)
    packets = r.text.split(RS)
    if len(packets) != 1:
        raise CaseFail("handshake response must hold only the open packet, got %s" % short(r.text))
    c.check_open(packets[0], ["websocket"])
    ct = r.headers.get("content-type", "")
    if not ct.lower().startswith("text/plain"):
        raise CaseFail("Content-Type %r, want text/plain" % ct)


@case("hs.poll.2", "polling handshake gives a new sid each time")
def _(c):
    a, _ = c.open_polling()
    b, _ = c.open_polling()
    if a == b:
        raise CaseFail("two handshakes returned the same sid %r" % a)


@case("hs.poll.3", "missing EIO refused: 400 {code, message}")
def _(c):
    c.expect_400_json(c.http("GET", c.query(eio=None)), "GET without EIO")


@case("hs.poll.4", "EIO=abc refused: 400 {code, message}")
def _(c):
    c.expect_400_json(c.http("GET", c.query(eio="abc")), "GET with EIO=abc")


@case("hs.poll.5", "EIO=3 (unsupported version) refused: 400 {code, message}")
def _(c):
    c.expect_400_json(c.http("GET", c.query(eio="3")), "GET with EIO=3")


@case("hs.poll.6", "missing transport refused: 400 {code, message}")
def _(c):
    c.expect_400_json(c.http("GET", c.query(transport=None)), "GET without transport")


@case("hs.poll.7", "transport=abc refused: 400 {code, message}")
def _(c):
    c.expect_400_json(c.http("GET", c.query(transport="abc")), "GET with transport=abc")


@case("hs.poll.8", "POST without sid (bad handshake method) refused: 400 {code, message}")
def _(c):
    c.expect_400_json(c.http("POST", c.query(), body=""), "POST without sid")


@case("hs.poll.9", "PUT refused: 400 {code, message}")
def _(c):
    c.expect_400_json(c.http("PUT", c.query(), body=""), "PUT without sid")


@case("hs.poll.10", "unknown sid refused on GET and POST: 400 {code, message}")
def _(c):
    c.expect_400_json(c.get("NoSuchSessionId00001"), "GET with unknown sid")
    c.expect_400_json(c.post("NoSuchSessionId00001", "4x"), "POST with unknown sid")


@case("hs.ws.1", "WebSocket handshake: first message is the open packet, upgrades []")
def _(c):
    c.ws_open()


def _ws_refused(q, what):
    def run(c):
        ws, st = c.ws_connect(q(c), expect_101=False)
        if st == 101:
            p = c.recv(ws, 2.0, skip_pings=False)
            if p[0] != "closed":
                raise CaseFail("%s: upgrade accepted (101) and the session not closed: got %r" % (what, p))
        elif st != 400:
            raise CaseFail("%s: status %d, want 400" % (what, st))
    return run


CASES.append(("hs.ws.2", "WebSocket without EIO refused", False,
              _ws_refused(lambda c: c.query("websocket", eio=None), "no EIO")))
CASES.append(("hs.ws.3", "WebSocket with EIO=abc refused", False,
              _ws_refused(lambda c: c.query("websocket", eio="abc"), "EIO=abc")))
CASES.append(("hs.ws.4", "WebSocket upgrade without transport refused", False,
              _ws_refused(lambda c: c.query(transport=None), "no transport")))
CASES.append(("hs.ws.5", "WebSocket upgrade with transport=abc refused", False,
              _ws_refused(lambda c: c.query(transport="abc"), "transport=abc")))
CASES.append(("hs.ws.6", "WebSocket upgrade with an unknown sid refused", False,
              _ws_refused(lambda c: c.query("websocket", sid="NoSuchSessionId00001"), "unknown sid")))


# ---------------------------------------------------------------- messages, polling

@case("msg.poll.1", "POST '4hello' answered 'ok'; the next GET returns '4hello'", echo=True)
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "4hello")
    got = c.poll(sid)
    if got != ["4hello"]:
        raise CaseFail("expected ['4hello'], got %r" % got)


@case("msg.poll.2", "several text packets joined by \\x1e echoed in one payload, in order", echo=True)
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "4test1\x1e4test2\x1e4test3")
    got = c.poll(sid)
    if got != ["4test1", "4test2", "4test3"]:
        raise CaseFail("expected 4test1 \\x1e 4test2 \\x1e 4test3, got %r" % got)


@case("msg.poll.3", "text and binary ('b' + base64) packets echoed: '4hello\\x1ebAQIDBA=='", echo=True)
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "4hello\x1ebAQIDBA==")
    got = c.poll(sid)
    if got != ["4hello", "bAQIDBA=="]:
        raise CaseFail("expected ['4hello', 'bAQIDBA=='], got %r" % got)


@case("msg.poll.4", "256-byte binary packet ('b' + base64) echoed over polling", echo=True)
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "b" + base64.b64encode(bytes(range(256))).decode())
    got = c.poll(sid)
    if got != ["b" + base64.b64encode(bytes(range(256))).decode()]:
        raise CaseFail("expected the 256-byte binary back as b+base64, got %r" % [g[:40] for g in got])


@case("msg.poll.5", "UTF-8 text packet echoed byte for byte", echo=True)
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "4héllo wörld €😀")
    got = c.poll(sid)
    if got != ["4héllo wörld €😀"]:
        raise CaseFail("expected the UTF-8 text back, got %r" % got)


@case("msg.poll.6", "invalid packet 'abc' in a POST closes the session: the next GET gets 400")
def _(c):
    sid, _ = c.open_polling()
    c.post(sid, "abc")
    r = c.get(sid)
    if r.error or r.status != 400:
        raise CaseFail("GET after the invalid packet: expected 400 (session closed), got %r" % r)


@case("msg.poll.7", "the POST carrying the invalid packet 'abc' is answered 400 (or dropped), not 200 'ok'")
def _(c):
    sid, _ = c.open_polling()
    r = c.post(sid, "abc")
    if not r.error and r.status != 400:
        raise CaseFail("POST 'abc': expected 400 or a dropped connection, got %r" % r)


@case("msg.poll.8", "duplicate GET: the first gets 200 '1' (close), the second 400, then the session is gone")
def _(c):
    sid, _ = c.open_polling()
    first = Background(c.get, sid, 3.0)
    time.sleep(0.03)
    second = c.get(sid, timeout=3.0, extra="t=burst")
    r1 = first.get()
    errs = []
    if r1 is None or r1.error or r1.status != 200 or r1.text != "1":
        errs.append("first GET: expected 200 '1', got %r" % (r1,))
    if second.error or second.status != 400:
        errs.append("second GET: expected 400, got %r" % second)
    third = c.get(sid)
    if third.error or third.status != 400:
        errs.append("GET afterwards: expected 400, got %r" % third)
    if errs:
        raise CaseFail("; ".join(errs))


@case("msg.poll.9", "a GET aborted by the client closes the session (next GET 400)")
def _(c):
    sid, _ = c.open_polling()
    s = socket.create_connection(("127.0.0.1", c.port), timeout=2)
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (c.query(sid=sid), c.port)).encode())
    time.sleep(0.03)
    s.close()
    c.log.append("GET %s (aborted after 30 ms)" % c.query(sid=sid))
    time.sleep(0.05)
    r = c.get(sid)
    if r.error or r.status != 400:
        raise CaseFail("GET after an aborted GET: expected 400, got %r" % r)


@case("msg.poll.10", "POST of a payload over maxPayload refused (4xx) without killing the gateway")
def _(c):
    sid, _ = c.open_polling()
    r = c.post(sid, "4" + "x" * (MAX_PAYLOAD + 10), timeout=5)
    if not r.error and not (400 <= r.status < 500):
        raise CaseFail("expected a 4xx (or the connection dropped), got %r" % r)
    r2 = c.get(None)
    if r2.error or r2.status != 200:
        raise CaseFail("gateway not serving handshakes afterwards: %r" % r2)


# ---------------------------------------------------------------- messages, WebSocket

@case("msg.ws.1", "text packet '4hello' echoed", echo=True)
def _(c):
    ws, _ = c.ws_open()
    c.send(ws, "4hello")
    c.expect_packets(ws, [("text", "4hello")])


@case("msg.ws.2", "binary message [1,2,3,4] echoed as a binary frame", echo=True)
def _(c):
    ws, _ = c.ws_open()
    c.send(ws, bytes([1, 2, 3, 4]))
    c.expect_packets(ws, [("binary", bytes([1, 2, 3, 4]))])


@case("msg.ws.3", "text and binary interleaved keep their order", echo=True)
def _(c):
    ws, _ = c.ws_open()
    for p in ("4a", b"\x00\x01", "4b", b"\xff"):
        c.send(ws, p)
    c.expect_packets(ws, [("text", "4a"), ("binary", b"\x00\x01"), ("text", "4b"), ("binary", b"\xff")])


@case("msg.ws.4", "invalid packet 'abc' closes the session")
def _(c):
    ws, _ = c.ws_open()
    c.send(ws, "abc")
    c.expect_ws_closed(ws)


@case("msg.ws.5", "empty text message (no packet type) closes the session")
def _(c):
    ws, _ = c.ws_open()
    c.send(ws, "")
    c.expect_ws_closed(ws)


# ---------------------------------------------------------------- heartbeat

@case("hb.poll.1", "polling: 3 rounds of server ping '2' answered by POST '3' (200)")
def _(c):
    sid, _ = c.open_polling()
    for i in range(3):
        r = c.get(sid, timeout=2.0)
        if r.error or r.status != 200 or r.text != "2":
            raise CaseFail("round %d: GET expected 200 '2', got %r" % (i + 1, r))
        if r.ms > PING_INTERVAL + 400:
            raise CaseFail("round %d: ping came after %d ms (pingInterval %d)" % (i + 1, r.ms, PING_INTERVAL))
        c.post_ok(sid, "3")


@case("hb.poll.2", "polling: no pong within pingInterval+pingTimeout closes the session (GET 400)")
def _(c):
    sid, _ = c.open_polling()
    time.sleep((PING_INTERVAL + PING_TIMEOUT + 100) / 1000.0)
    r = c.get(sid)
    if r.error or r.status != 400:
        raise CaseFail("GET %d ms after the handshake without pong: expected 400, got %r" % (
            PING_INTERVAL + PING_TIMEOUT + 100, r))


@case("hb.poll.3", "polling: a pending GET is answered by the ping after ~pingInterval")
def _(c):
    sid, _ = c.open_polling()
    t0 = time.monotonic()
    r = c.get(sid, timeout=2.0)
    dt = (time.monotonic() - t0) * 1000
    if r.error or r.status != 200 or r.text != "2":
        raise CaseFail("expected 200 '2', got %r" % r)
    if dt > PING_INTERVAL + 300:
        raise CaseFail("the pending GET got the ping only after %d ms" % dt)


@case("hb.ws.1", "WebSocket: 3 pings '2' at pingInterval, each answered '3'")
def _(c):
    ws, _ = c.ws_open()
    last = time.monotonic()
    for i in range(3):
        p = c.recv(ws, 2.0, skip_pings=False)
        now = time.monotonic()
        if p != ("text", "2"):
            raise CaseFail("ping %d: expected '2', got %r" % (i + 1, p))
        gap = (now - last) * 1000
        if gap < PING_INTERVAL - 100 or gap > PING_INTERVAL + 400:
            raise CaseFail("ping %d came %d ms after the previous event (pingInterval %d)" % (i + 1, gap,
                                                                                        PING_INTERVAL))
        last = now
        c.send(ws, "3")


@case("hb.ws.2", "WebSocket: no pong closes the connection after pingInterval+pingTimeout (not before)")
def _(c):
    t0 = time.monotonic()
    ws, _ = c.ws_open()
    pings = 0
    while True:
        p = c.recv(ws, 3.0, skip_pings=False)
        if p == ("text", "2"):
            pings += 1
            continue
        break
    dt = (time.monotonic() - t0) * 1000
    if p[0] != "closed":
        raise CaseFail("expected the server to close, got %r after %d ms" % (p, dt))
    if dt < PING_INTERVAL + PING_TIMEOUT - 60:
        raise CaseFail("closed after only %d ms (pingInterval+pingTimeout = %d)" % (dt, PING_INTERVAL + PING_TIMEOUT))
    if dt > PING_INTERVAL + PING_TIMEOUT + 1000:
        raise CaseFail("closed only after %d ms" % dt)
    if pings < 1:
        raise CaseFail("closed without having sent a ping first")


@case("hb.ws.4", "WebSocket: session stays up for 1.5 s while pongs are sent")
def _(c):
    ws, _ = c.ws_open()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        p = c.recv(ws, max(0.01, end - time.monotonic()))
        if p[0] == "closed":
            raise CaseFail("closed although every ping was answered: %r" % (p,))


# ---------------------------------------------------------------- close

@case("close.poll.1", "polling: POST '1' ends the pending GET with '6' (noop), then GET 400")
def _(c):
    sid, _ = c.open_polling()
    pending = Background(c.get, sid, 3.0)
    time.sleep(0.05)
    rp = c.post(sid, "1")
    r = pending.get()
    errs = []
    if rp.error or rp.status != 200:
        errs.append("POST '1': expected 200, got %r" % rp)
    if r is None or r.error or r.status != 200 or r.text != "6":
        errs.append("pending GET: expected 200 '6', got %r" % (r,))
    r2 = c.get(sid)
    if r2.error or r2.status != 400:
        errs.append("GET afterwards: expected 400, got %r" % r2)
    if errs:
        raise CaseFail("; ".join(errs))


@case("close.ws.1", "WebSocket: packet '1' closes the connection")
def _(c):
    ws, _ = c.ws_open()
    c.send(ws, "1")
    c.expect_ws_closed(ws)


@case("close.ws.2", "WebSocket: TCP close of the client ends the session (its sid is unknown afterwards)")
def _(c):
    ws, v = c.ws_open()
    ws.close_tcp()
    time.sleep(0.1)
    r = c.get(v["sid"])
    if r.error or r.status != 400:
        raise CaseFail("GET with the sid of a closed WebSocket session: expected 400, got %r" % r)


# ---------------------------------------------------------------- upgrade

@case("up.1", "upgrade: probe '2probe' -> '3probe', pending GET -> '6', '5' upgrades, session works over WS")
def _(c):
    sid, _ = c.open_polling()
    ws, _ = c.ws_open(sid)
    c.send(ws, "2probe")
    c.expect_packets(ws, [("text", "3probe")])
    r = c.get(sid, timeout=2.0)
    if r.error or r.status != 200 or r.text != "6":
        raise CaseFail("GET during the upgrade: expected 200 '6' (noop), got %r" % r)
    c.send(ws, "5")
    c.probe_ws(ws)


@case("up.2", "GET requests during an upgrade (before the probe) are answered '6' at once")
def _(c):
    sid, _ = c.open_polling()
    ws, _ = c.ws_open(sid)
    for i in range(5):
        r = c.get(sid, timeout=1.0)
        if r.error or r.status != 200 or r.text != "6":
            raise CaseFail("GET %d while upgrading: expected 200 '6', got %r" % (i + 1, r))
    c.send(ws, "2probe")
    c.send(ws, "5")
    c.expect_packets(ws, [("text", "3probe")])
    c.probe_ws(ws)


@case("up.3", "after the upgrade a polling GET with the same sid is refused (400), WS keeps working")
def _(c):
    sid, _ = c.open_polling()
    ws, _ = c.ws_open(sid)
    c.send(ws, "2probe")
    c.expect_packets(ws, [("text", "3probe")])
    c.send(ws, "5")
    time.sleep(0.05)
    r = c.get(sid)
    if r.error or r.status != 400:
        raise CaseFail("GET after the upgrade: expected 400, got %r" % r)
    c.probe_ws(ws)


@case("up.4", "after the upgrade a second WebSocket with the same sid is refused; the first keeps working")
def _(c):
    sid, _ = c.open_polling()
    ws, _ = c.ws_open(sid)
    c.send(ws, "2probe")
    c.expect_packets(ws, [("text", "3probe")])
    c.send(ws, "5")
    time.sleep(0.05)
    ws2, st = c.ws_connect(c.query("websocket", sid), expect_101=False)
    if st == 101:
        p = c.recv(ws2, 2.0, skip_pings=False)
        if p[0] != "closed":
            raise CaseFail("second WebSocket with the same sid accepted and not closed: %r" % (p,))
    elif st != 400:
        raise CaseFail("second WebSocket: status %d, want 400" % st)
    c.probe_ws(ws)


@case("up.5", "the session keeps echoing across the upgrade (polling before, WebSocket after)",
      echo=True)
def _(c):
    sid, _ = c.open_polling()
    c.post_ok(sid, "4before")
    got = c.poll(sid)
    if got != ["4before"]:
        raise CaseFail("expected ['4before'] before upgrading, got %r" % got)
    ws, _ = c.ws_open(sid)
    c.send(ws, "2probe")
    c.expect_packets(ws, [("text", "3probe")])
    c.send(ws, "5")
    c.send(ws, "4after")
    c.expect_packets(ws, [("text", "4after")])


@case("up.6", "WebSocket with a sid of a session that is already WebSocket-only is refused")
def _(c):
    ws, v = c.ws_open()
    ws2, st = c.ws_connect(c.query("websocket", v["sid"]), expect_101=False)
    if st == 101:
        p = c.recv(ws2, 2.0, skip_pings=False)
        if p[0] != "closed":
            raise CaseFail("second WebSocket for a WebSocket session accepted: %r" % (p,))
    elif st != 400:
        raise CaseFail("status %d, want 400" % st)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    a = sub.add_parser("cases")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--path", default="/engine.io/")
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
    ctx = EioCtx(args.port, args.path, args.timeout, echo=True)
    return run_case_list(CASES, ctx, args.only, admin_ports=args.admin_port or (), after=args.after)


if __name__ == "__main__":
    sys.exit(main())
