#!/usr/bin/python3
"""wsconf.py - a raw-socket RFC 6455 client, and the WebSocket conformance
cases of tests/integ/55-websocket.t.

The client builds every frame by hand over a plain TCP socket, so a test
controls everything a library would hide: the mask bit and key, FIN, the RSV
bits, any opcode, the declared length and its encoding (7, 16 or 64 bits,
even lengths that cannot exist), and how the bytes are cut into TCP writes
(one byte at a time, random sizes, at chosen offsets, with pauses). It reads
back frames, reassembles messages the server fragments, reports the close
code and reason, and tells a TCP close (EOF) or reset from a timeout.

The cases follow the categories of the Autobahn|Testsuite server cases 1 to
10 (framing, ping/pong, reserved bits, opcodes, fragmentation, UTF-8, close
handling, limits, auto-fragmentation), written from RFC 6455 and the case
descriptions, plus hardening cases on lengths and limits.

  wsconf.py cases --port P [--big-port P2] [--only REGEX] [--list]
      runs the cases against ws://127.0.0.1:P/ws-echo (the conformance echo
      endpoint; P2: a gateway with raised TIDINGS_MAX_* limits for the large
      messages). Prints one line per case: "ok - ID desc" or
      "not ok - ID desc", then "# " lines with what was sent and received.
      Exits 0 when every case ran (failures included), 2 on a usage error.

  wsconf.py echo --port P [--path /ws-echo] [--text hello]
      one round trip; exit 0 when the echo came back.

Also importable (eioconf.py and sioconf.py use WSClient).
"""

import argparse
import base64
import hashlib
import os
import random
import re
import select
import socket
import struct
import sys
import time
import traceback

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
OP_NAMES = {0: "cont", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


def opname(op):
    return OP_NAMES.get(op, "op%d" % op)


def hexhead(data, n=48):
    """Hex of the first n bytes, with the total length when cut."""
    data = bytes(data)
    h = data[:n].hex(" ")
    if len(data) > n:
        h += " ... (%d bytes)" % len(data)
    return h or "(empty)"


def mask_bytes(data, key):
    """XOR data with the 4-byte key, fast enough for 16 MB messages."""
    n = len(data)
    if n == 0:
        return b""
    k = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None,
                length=None, len_form=None):
    """One frame. rsv: the 3 RSV bits as a number 0..7 (RSV1 = 4).
    length: declared payload length (default len(payload)); len_form: 7, 16
    or 64 to force the length encoding."""
    payload = bytes(payload)
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    m = 0x80 if mask else 0
    if len_form is None:
        len_form = 7 if n < 126 else (16 if n < 65536 else 64)
    if len_form == 7:
        head = bytes([b0, m | n])
    elif len_form == 16:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4) if key is None else bytes(key)
        return head + key + mask_bytes(payload, key)
    return head + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    def __repr__(self):
        return "%s%s%s%s len=%d [%s]" % (
            opname(self.opcode), "" if self.fin else " FIN=0",
            " rsv=%d" % self.rsv if self.rsv else "", " MASKED" if self.masked else "",
            len(self.payload), hexhead(self.payload, 24))


class Event:
    """What a reader sees: kind is text, binary, ping, pong, close, eof,
    reset, timeout or violation (a frame no server may send)."""

    __slots__ = ("kind", "data", "code", "reason", "at")

    def __init__(self, kind, data=b"", code=None, reason=b"", at=0.0):
        self.kind, self.data, self.code, self.reason, self.at = kind, data, code, reason, at

    def __repr__(self):
        if self.kind == "close":
            return "close(code=%s reason=%r)" % (self.code, bytes(self.reason)[:60])
        if self.kind in ("text", "binary", "ping", "pong"):
            return "%s(len=%d [%s])" % (self.kind, len(self.data), hexhead(self.data, 24))
        if self.kind in ("violation", "reset"):
            return "%s(%s)" % (self.kind, self.data)
        return self.kind


class HandshakeError(Exception):
    pass


class WSClient:
    """A WebSocket client over a raw TCP socket; every read has a deadline."""

    def __init__(self, port, path="/ws-echo", host="127.0.0.1", timeout=3.0):
        self.port, self.path, self.host, self.timeout = port, path, host, timeout
        self.sock = None
        self.buf = bytearray()
        self.frames = []  # parsed, not yet consumed
        self.eof = False
        self.reset = None
        self.sent_log = []  # (label, length, head hex)
        self.recv_log = []  # frames as read
        self.send_error = None
        self.bytes_sent = 0
        self.status = None
        self.resp_headers = {}
        self.resp_body = b""
        self._frag_op = None
        self._frag = bytearray()
        self.violations = []

    # ---- connection

    def connect_tcp(self):
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        self.sock = s

    def handshake(self, headers=None, key=None, version="13", raw_request=None, expect_101=True):
        """Sends the upgrade request; reads the status line and headers.
        Returns the status. With expect_101, raises HandshakeError unless the
        server switched protocols with the right Sec-WebSocket-Accept."""
        if self.sock is None:
            self.connect_tcp()
        key = base64.b64encode(os.urandom(16)).decode() if key is None else key
        if raw_request is None:
            lines = ["GET %s HTTP/1.1" % self.path, "Host: %s:%d" % (self.host, self.port),
                     "Upgrade: websocket", "Connection: Upgrade"]
            if key is not False:
                lines.append("Sec-WebSocket-Key: %s" % key)
            if version is not None:
                lines.append("Sec-WebSocket-Version: %s" % version)
            for k, v in (headers or {}).items():
                lines.append("%s: %s" % (k, v))
            raw_request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._sendall(raw_request, "upgrade request")
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            if self.eof or self.reset or time.monotonic() > deadline:
                raise HandshakeError("no complete HTTP response (got %r)" % bytes(self.buf[:200]))
            self._pump(deadline, parse=False)
        i = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:i]).decode("latin-1")
        del self.buf[:i + 4]
        lines = head.split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            raise HandshakeError("bad status line %r" % lines[0])
        self.status = int(m.group(1))
        self.resp_headers = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                self.resp_headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            # collect a short body for diagnostics
            n = int(self.resp_headers.get("content-length", "0") or 0)
            deadline = time.monotonic() + 1.0
            while len(self.buf) < n and not self.eof and not self.reset and time.monotonic() < deadline:
                self._pump(deadline, parse=False)
            self.resp_body = bytes(self.buf[:n])
            del self.buf[:n]
            if expect_101:
                raise HandshakeError("status %d, body %r" % (self.status, self.resp_body[:200]))
            return self.status
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if expect_101:
            if self.resp_headers.get("upgrade", "").lower() != "websocket":
                raise HandshakeError("101 without Upgrade: websocket (%r)" % self.resp_headers)
            if "upgrade" not in self.resp_headers.get("connection", "").lower():
                raise HandshakeError("101 without Connection: Upgrade (%r)" % self.resp_headers)
            if self.resp_headers.get("sec-websocket-accept") != want:
                raise HandshakeError("Sec-WebSocket-Accept %r, want %r" %
                                     (self.resp_headers.get("sec-websocket-accept"), want))
        self._parse()
        return self.status

    def open(self, **kw):
        self.connect_tcp()
        self.handshake(**kw)
        return self

    def close_tcp(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    # ---- sending

    def _sendall(self, data, label=None, stop_on_close=False):
        """Sends everything while reading what arrives meanwhile (so a server
        echoing while we send can never deadlock us). Returns False when the
        server closed or reset first, or (stop_on_close) sent a close frame."""
        data = memoryview(bytes(data))
        if label is not None:
            self.sent_log.append((label, len(data), hexhead(data, 32)))
        off = 0
        deadline = time.monotonic() + max(self.timeout, 30.0)
        while off < len(data):
            if self.send_error:
                return False
            if self.reset:
                self.send_error = "connection reset (%s) after %d bytes" % (self.reset, self.bytes_sent)
                return False
            if stop_on_close and any(f.opcode == OP_CLOSE for f in self.frames):
                self.send_error = "stopped: server sent close after %d bytes" % self.bytes_sent
                return False
            if time.monotonic() > deadline:
                self.send_error = "send timed out after %d bytes" % self.bytes_sent
                return False
            try:
                r, w, _ = select.select([self.sock] if not self.eof else [], [self.sock], [], 0.5)
            except (OSError, ValueError) as e:
                self.send_error = "select: %s" % e
                return False
            if r:
                self._pump(time.monotonic(), parse=True, block=False)
            if w:
                try:
                    n = self.sock.send(data[off:off + (1 << 20)])
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self.send_error = "%s after %d bytes" % (e.__class__.__name__, self.bytes_sent)
                    return False
                off += n
                self.bytes_sent += n
        return True

    def send(self, data, label=None, stop_on_close=False):
        return self._sendall(data, label if label is not None else "raw", stop_on_close)

    def send_frame(self, opcode, payload=b"", label=None, **kw):
        f = build_frame(opcode, payload, **kw)
        if label is None:
            label = "%s%s%s len=%d" % (opname(opcode), "" if kw.get("fin", True) else " FIN=0",
                                       " rsv=%d" % kw["rsv"] if kw.get("rsv") else "", len(payload))
        return self._sendall(f, label)

    def send_chunked(self, data, sizes, delay=0.0, label="chunked"):
        """Writes data in pieces: sizes is an int (fixed), a list (cycled),
        or 'random'; delay seconds between writes (reading meanwhile)."""
        data = bytes(data)
        self.sent_log.append((label + " (%s)" % (sizes if not isinstance(sizes, list) else "sizes %s" % sizes[:8]),
                              len(data), hexhead(data, 32)))
        off, i = 0, 0
        rnd = random.Random(len(data))
        while off < len(data):
            if isinstance(sizes, int):
                n = sizes
            elif isinstance(sizes, list):
                n = sizes[i % len(sizes)]
            else:
                n = rnd.randint(1, 4096)
            if not self._sendall(data[off:off + n]):
                return False
            off += n
            i += 1
            if delay and off < len(data):
                self.wait(delay)
        return True

    def wait(self, secs):
        """Sleeps, reading whatever arrives."""
        end = time.monotonic() + secs
        while time.monotonic() < end and not self.eof and not self.reset:
            self._pump(end)
        rest = end - time.monotonic()
        if rest > 0:
            time.sleep(rest)

    # ---- receiving

    def _pump(self, deadline, parse=True, block=True):
        """One read with the deadline; sets eof/reset."""
        if self.eof or self.reset or self.sock is None:
            return
        t = max(0.0, deadline - time.monotonic()) if block else 0.0
        try:
            r, _, _ = select.select([self.sock], [], [], t)
        except (OSError, ValueError) as e:
            self.reset = "select: %s" % e
            return
        if not r:
            return
        try:
            chunk = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.reset = e.__class__.__name__
            return
        if not chunk:
            self.eof = True
        else:
            self.buf += chunk
        if parse:
            self._parse()

    def _parse(self):
        b = self.buf
        while len(b) >= 2:
            b0, b1 = b[0], b[1]
            n = b1 & 0x7F
            hl = 2
            if n == 126:
                if len(b) < 4:
                    return
                n = struct.unpack_from("!H", b, 2)[0]
                hl = 4
            elif n == 127:
                if len(b) < 10:
                    return
                n = struct.unpack_from("!Q", b, 2)[0]
                hl = 10
                if n >> 63:
                    self.violations.append("server frame with 64-bit length MSB set")
            masked = bool(b1 & 0x80)
            if masked:
                hl += 4
            if n > (1 << 31):
                self.violations.append("server frame declares %d bytes" % n)
                self.reset = "absurd server frame length"
                return
            if len(b) < hl + n:
                return
            payload = bytes(b[hl:hl + n])
            if masked:
                payload = mask_bytes(payload, b[hl - 4:hl])
            f = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload)
            del b[:hl + n]
            self.frames.append(f)
            self.recv_log.append(f)

    def next_frame(self, deadline):
        while not self.frames:
            if self.eof or self.reset or time.monotonic() >= deadline:
                return None
            self._pump(deadline)
        return self.frames.pop(0)

    def next_event(self, timeout=None):
        """The next message, control frame, or eof/reset/timeout. Server
        fragments are reassembled; frames no server may send give a
        'violation' event."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f = self.next_frame(deadline)
            now = time.monotonic()
            if f is None:
                if self.frames:
                    continue
                if self.reset:
                    return Event("reset", self.reset, at=now)
                if self.eof:
                    return Event("eof", at=now)
                return Event("timeout", at=now)
            bad = []
            if f.masked:
                bad.append("masked server frame")
            if f.rsv:
                bad.append("RSV bits %d set" % f.rsv)
            if f.opcode not in OP_NAMES:
                bad.append("reserved opcode %d" % f.opcode)
            if f.opcode >= 8 and (not f.fin or len(f.payload) > 125):
                bad.append("bad control frame (fin=%s len=%d)" % (f.fin, len(f.payload)))
            if bad:
                return Event("violation", "; ".join(bad) + " in %r" % f, at=now)
            if f.opcode == OP_CLOSE:
                p = f.payload
                if len(p) == 0:
                    return Event("close", code=None, at=now)
                if len(p) == 1:
                    return Event("violation", "1-byte close payload from server", at=now)
                return Event("close", code=struct.unpack("!H", p[:2])[0], reason=p[2:], at=now)
            if f.opcode in (OP_PING, OP_PONG):
                return Event(opname(f.opcode), f.payload, at=now)
            if f.opcode in (OP_TEXT, OP_BIN):
                if self._frag_op is not None:
                    return Event("violation", "new data frame inside a fragmented message", at=now)
                if f.fin:
                    return Event(opname(f.opcode), f.payload, at=now)
                self._frag_op = f.opcode
                self._frag = bytearray(f.payload)
                continue
            # continuation
            if self._frag_op is None:
                return Event("violation", "continuation without a message", at=now)
            self._frag += f.payload
            if f.fin:
                op, self._frag_op = self._frag_op, None
                data, self._frag = bytes(self._frag), bytearray()
                return Event(opname(op), data, at=now)

    def wait_eof(self, timeout=2.0):
        """True when the server closed the TCP connection (EOF or reset)
        within timeout; frames arriving meanwhile are kept."""
        deadline = time.monotonic() + timeout
        while not self.eof and not self.reset and time.monotonic() < deadline:
            self._pump(deadline)
        return self.eof or bool(self.reset)

    def describe(self):
        """Diagnostic lines: what was sent and what came back."""
        out = []
        for label, n, h in self.sent_log[-12:]:
            out.append("sent %s: %d bytes: %s" % (label, n, h))
        if len(self.sent_log) > 12:
            out.insert(0, "(%d earlier writes not shown)" % (len(self.sent_log) - 12))
        if self.send_error:
            out.append("send stopped: %s" % self.send_error)
        for f in self.recv_log[-12:]:
            out.append("received frame: %r" % f)
        if len(self.recv_log) > 12:
            out.append("(%d frames received in all)" % len(self.recv_log))
        if not self.recv_log:
            out.append("received no frame")
        if self.buf:
            out.append("unparsed bytes: %s" % hexhead(self.buf, 32))
        out.append("tcp: %s" % ("closed by server (EOF)" if self.eof else
                                ("reset: %s" % self.reset if self.reset else
                                 ("still open" if self.sock is not None else "not connected"))))
        return out


# =====================================================================
# the cases

class CaseFail(Exception):
    pass


class Ctx:
    def __init__(self, port, big_port, path, timeout):
        self.port, self.big_port, self.path, self.timeout = port, big_port, path, timeout
        self.clients = []

    def begin(self):
        self.clients = []

    def diag_lines(self):
        out = []
        for i, ws in enumerate(self.clients):
            out += ["[conn %d] %s" % (i + 1, line) for line in ws.describe()]
        return out

    def end(self):
        for ws in self.clients:
            ws.close_tcp()
        self.clients = []

    def connect(self, big=False, path=None):
        c = WSClient(self.big_port if big else self.port, path or self.path, timeout=self.timeout)
        self.clients.append(c)
        try:
            c.open()
        except (HandshakeError, OSError) as e:
            raise CaseFail("WebSocket handshake failed: %s" % e)
        return c

    # -- expectations

    def expect(self, ws, want, timeout=None, what=""):
        """Reads len(want) events; each must match. want items: (kind, data)
        or (kind,) to accept any payload."""
        got = []
        for w in want:
            e = ws.next_event(timeout)
            got.append(e)
            ok = e.kind == w[0] and (len(w) < 2 or bytes(e.data) == bytes(w[1]))
            if not ok:
                raise CaseFail("%sexpected %s, got %r (events so far: %r)" % (
                    what + ": " if what else "", self._want_str(w), e, got[:-1]))
        return got

    @staticmethod
    def _want_str(w):
        if len(w) < 2:
            return w[0]
        return "%s(len=%d [%s])" % (w[0], len(w[1]), hexhead(w[1], 24))

    def expect_fail(self, ws, codes, before=(), timeout=None, allow_before=None):
        """The server must fail the connection: first the events in before
        (e.g. an echo of a good message sent earlier), then a close frame
        whose code is in codes, then the TCP close. allow_before: optional
        set of event kinds tolerated before the close (e.g. a complete echo
        the implementation may or may not produce)."""
        if isinstance(codes, int):
            codes = (codes,)
        self.expect(ws, before, timeout, "before the close")
        extra = []
        while True:
            e = ws.next_event(timeout)
            if allow_before and e.kind in allow_before:
                extra.append(e)
                continue
            break
        if e.kind != "close":
            raise CaseFail("expected a close frame with code %s, got %r%s" % (
                "/".join(map(str, codes)), e, " after %r" % extra if extra else ""))
        if e.code not in codes:
            raise CaseFail("close code %s (reason %r), want %s" % (
                e.code, bytes(e.reason)[:80], "/".join(map(str, codes))))
        self._check_reason(e)
        # answer like a client would, then the server must drop the TCP link
        ws.send(build_frame(OP_CLOSE, close_payload(e.code)), "close reply %s" % e.code)
        if not ws.wait_eof(2.0):
            raise CaseFail("server sent close %s but kept the TCP connection open 2 s "
                           "after our close reply" % e.code)
        self._nothing_after_close(ws)
        return e

    @staticmethod
    def _nothing_after_close(ws):
        if ws.frames:
            raise CaseFail("server sent frames after its close frame: %r" % ws.frames[:3])

    @staticmethod
    def _check_reason(e):
        try:
            bytes(e.reason).decode("utf-8")
        except UnicodeDecodeError:
            raise CaseFail("close reason from the server is not UTF-8: %r" % bytes(e.reason))

    def close_ok(self, ws, code=1000, reason=b"", want_codes=None, timeout=None):
        """Client-initiated close handshake: the server must answer with a
        close frame (code in want_codes, default the same code) and nothing
        else, then close the TCP connection."""
        want_codes = (code,) if want_codes is None else want_codes
        ws.send(build_frame(OP_CLOSE, close_payload(code, reason)),
                "close %s%s" % (code, " reason %d bytes" % len(reason) if reason else ""))
        e = ws.next_event(timeout)
        if e.kind != "close":
            raise CaseFail("after our close %s expected the close reply, got %r" % (code, e))
        if e.code not in want_codes:
            raise CaseFail("close reply code %s, want %s" % (e.code, "/".join(map(str, want_codes))))
        self._check_reason(e)
        if not ws.wait_eof(2.0):
            raise CaseFail("server did not close TCP within 2 s after the close handshake")
        self._nothing_after_close(ws)
        return e

    def expect_quiet_then_close(self, ws, timeout=0.3):
        """Nothing may arrive for timeout seconds (the connection stays open)."""
        e = ws.next_event(timeout)
        if e.kind != "timeout":
            raise CaseFail("expected nothing yet (connection open), got %r" % e)

    def alive_check(self, big=False):
        ws = self.connect(big=big)
        ws.send_frame(OP_TEXT, b"still-alive")
        self.expect(ws, [("text", b"still-alive")], what="gateway still serving")
        self.close_ok(ws)


CASES = []


def case(cid, desc, big=False):
    def reg(fn):
        CASES.append((cid, desc, big, fn))
        return fn
    return reg


def add_case(cid, desc, fn, big=False):
    CASES.append((cid, desc, big, fn))


# ---------------------------------------------------------------- 1 framing

def _echo_case(op, payload, chunks=None, delay=0.0, big=False, timeout=None):
    kind = opname(op)

    def run(c):
        ws = c.connect(big=big)
        t0 = time.monotonic()
        f = build_frame(op, payload)
        if chunks is None:
            ws.send(f, "%s len=%d" % (kind, len(payload)))
        else:
            ws.send_chunked(f, chunks, delay, "%s len=%d" % (kind, len(payload)))
        c.expect(ws, [(kind, payload)], timeout=timeout)
        c.close_ok(ws)
        return time.monotonic() - t0
    return run


for _i, _n in enumerate([0, 125, 126, 127, 128, 65535, 65536], 1):
    add_case("1.1.%d" % _i, "text message of %d bytes echoed" % _n, _echo_case(OP_TEXT, b"*" * _n))
    add_case("1.2.%d" % _i, "binary message of %d bytes echoed" % _n, _echo_case(OP_BIN, b"\xfe" * _n))
add_case("1.1.8", "text 65536 bytes written in 997-byte chunks", _echo_case(OP_TEXT, b"*" * 65536, 997))
add_case("1.2.8", "binary 65536 bytes written in 997-byte chunks", _echo_case(OP_BIN, b"\xfe" * 65536, 997))
add_case("1.3.1", "text 128 bytes written 1 byte at a time", _echo_case(OP_TEXT, b"x" * 128, 1))
add_case("1.3.2", "binary 65536 bytes (64-bit length) written 1 byte at a time for the header, "
         "then random sizes", _echo_case(OP_BIN, bytes(range(256)) * 256, [1] * 14 + [777, 3000, 1, 9000]))
add_case("1.3.3", "text 65535 bytes in random-size writes", _echo_case(OP_TEXT, b"r" * 65535, "random"))
add_case("1.3.4", "binary 300 bytes (16-bit length) written 1 byte at a time",
         _echo_case(OP_BIN, os.urandom(300), 1))


# ---------------------------------------------------------------- 2 ping/pong

@case("2.1", "ping without payload answered by an empty pong")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_PING)
    c.expect(ws, [("pong", b"")])
    c.close_ok(ws)


@case("2.2", "ping with a small text payload answered by a pong with the same payload")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_PING, b"Hello, world!")
    c.expect(ws, [("pong", b"Hello, world!")])
    c.close_ok(ws)


@case("2.3", "ping with a small binary payload answered with the same payload")
def _(c):
    p = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
    ws = c.connect()
    ws.send_frame(OP_PING, p)
    c.expect(ws, [("pong", p)])
    c.close_ok(ws)


@case("2.4", "ping with 125-byte binary payload answered")
def _(c):
    p = bytes([0xfe]) * 125
    ws = c.connect()
    ws.send_frame(OP_PING, p)
    c.expect(ws, [("pong", p)])
    c.close_ok(ws)


@case("2.5", "ping with 126-byte payload (16-bit length): fail with 1002, no pong")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_PING, bytes([0xfe]) * 126)
    c.expect_fail(ws, 1002)


@case("2.6", "ping with 125-byte payload written 1 byte at a time")
def _(c):
    p = bytes([0xfe]) * 125
    ws = c.connect()
    ws.send_chunked(build_frame(OP_PING, p), 1, 0.0, "ping len=125")
    c.expect(ws, [("pong", p)])
    c.close_ok(ws)


@case("2.7", "unsolicited pong without payload is ignored")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_PONG)
    ws.send_frame(OP_TEXT, b"marker")
    c.expect(ws, [("text", b"marker")], what="first frame after the pong")
    c.close_ok(ws)


@case("2.8", "unsolicited pong with payload is ignored")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_PONG, b"unsolicited pong payload")
    ws.send_frame(OP_TEXT, b"marker")
    c.expect(ws, [("text", b"marker")], what="first frame after the pong")
    c.close_ok(ws)


@case("2.9", "unsolicited pong, then ping: only the pong of the ping comes back")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_PONG, b"unsolicited pong payload") + build_frame(OP_PING, b"ping payload"),
            "pong + ping")
    c.expect(ws, [("pong", b"ping payload")])
    c.close_ok(ws)


@case("2.10", "10 pings in a row answered by 10 pongs in order")
def _(c):
    ws = c.connect()
    data = b"".join(build_frame(OP_PING, b"payload-%d" % i) for i in range(10))
    ws.send(data, "10 pings")
    c.expect(ws, [("pong", b"payload-%d" % i) for i in range(10)])
    c.close_ok(ws)


@case("2.11", "10 pings, each written 1 byte at a time with pauses, answered in order")
def _(c):
    ws = c.connect()
    for i in range(10):
        ws.send_chunked(build_frame(OP_PING, b"payload-%d" % i), 1, 0.001, "ping %d" % i)
    c.expect(ws, [("pong", b"payload-%d" % i) for i in range(10)])
    c.close_ok(ws)


@case("2.12", "pings with every payload length 0..125 answered with the same payload")
def _(c):
    ws = c.connect()
    for n in range(126):
        p = bytes((i * 7 + n) & 0xFF for i in range(n))
        ws.send_frame(OP_PING, p, label="ping len=%d" % n)
        c.expect(ws, [("pong", p)], what="ping of %d bytes" % n)
    c.close_ok(ws)


@case("2.13", "ping between two binary messages: pong and echoes in order")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_BIN, b"\x01\x02") + build_frame(OP_PING, b"pp") +
            build_frame(OP_BIN, b"\x03"), "bin, ping, bin")
    c.expect(ws, [("binary", b"\x01\x02"), ("pong", b"pp"), ("binary", b"\x03")])
    c.close_ok(ws)


# ---------------------------------------------------------------- 3 reserved bits

@case("3.1", "text with RSV=1: fail with 1002")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_TEXT, b"Hello, world!", rsv=1)
    c.expect_fail(ws, 1002)


@case("3.2", "good text, then text with RSV=2: echo first, then 1002")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_TEXT, b"Hello, world!")
    ws.send_frame(OP_TEXT, b"Hello, world!", rsv=2)
    c.expect_fail(ws, 1002, before=[("text", b"Hello, world!")])


@case("3.3", "good text, text with RSV=3, ping (one write): echo, then 1002, no pong")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"Hello, world!") + build_frame(OP_TEXT, b"Hello, world!", rsv=3) +
            build_frame(OP_PING), "text, text rsv=3, ping")
    c.expect_fail(ws, 1002, before=[("text", b"Hello, world!")])


@case("3.4", "as 3.3, written 1 byte at a time")
def _(c):
    ws = c.connect()
    ws.send_chunked(build_frame(OP_TEXT, b"Hello, world!") + build_frame(OP_TEXT, b"Hello, world!", rsv=4) +
                    build_frame(OP_PING), 1, 0.0, "text, text rsv=4, ping")
    c.expect_fail(ws, 1002, before=[("text", b"Hello, world!")])


@case("3.5", "binary with RSV=5: fail with 1002")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_BIN, b"\x00\xff\xfe\xfd", rsv=5)
    c.expect_fail(ws, 1002)


@case("3.6", "ping with RSV=6: fail with 1002, no pong")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_PING, b"Hello, world!", rsv=6)
    c.expect_fail(ws, 1002)


@case("3.7", "close with RSV=7: fail with 1002")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_CLOSE, close_payload(1000), rsv=7)
    c.expect_fail(ws, 1002)


@case("3.8", "continuation frame with RSV=1 inside a fragmented text: 1002")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_TEXT, b"frag1", fin=False)
    ws.send_frame(OP_CONT, b"frag2", rsv=4)
    c.expect_fail(ws, 1002)


# ---------------------------------------------------------------- 4 opcodes

def _opcode_case(op, variant):
    def run(c):
        ws = c.connect()
        if variant == "bare":
            ws.send_frame(op)
            c.expect_fail(ws, 1002)
        elif variant == "payload":
            ws.send_frame(op, b"reserved opcode payload")
            c.expect_fail(ws, 1002)
        else:
            data = build_frame(OP_TEXT, b"Hello, world!") + build_frame(op, b"reserved opcode payload") + \
                build_frame(OP_PING)
            if variant == "chopped":
                ws.send_chunked(data, 1, 0.0, "text, op%d, ping" % op)
            else:
                ws.send(data, "text, op%d, ping" % op)
            c.expect_fail(ws, 1002, before=[("text", b"Hello, world!")])
    return run


for _base, _ops in (("4.1", (3, 4, 5, 6, 7)), ("4.2", (11, 12, 13, 14, 15))):
    _variants = ["bare", "payload", "between", "between", "chopped"]
    for _j, _op in enumerate(_ops):
        _v = _variants[_j]
        _d = {"bare": "reserved opcode %d without payload: 1002",
              "payload": "reserved opcode %d with payload: 1002",
              "between": "text, reserved opcode %d, ping: echo then 1002, no pong",
              "chopped": "text, reserved opcode %d, ping written 1 byte at a time: echo then 1002"}[_v] % _op
        add_case("%s.%d" % (_base, _j + 1), _d, _opcode_case(_op, _v))
for _j, _op in enumerate((3, 4, 5, 6, 7, 11, 12, 13, 14, 15)):
    add_case("4.3.%d" % (_j + 1), "reserved opcode %d with FIN=0: 1002" % _op,
             (lambda op: lambda c: (lambda ws: (ws.send_frame(op, b"x", fin=False), c.expect_fail(ws, 1002)))(
                 c.connect()))(_op))


# ---------------------------------------------------------------- 5 fragmentation

@case("5.1", "ping in 2 fragments: 1002")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_PING, b"fragment1", fin=False)
    ws.send_frame(OP_CONT, b"fragment2")
    c.expect_fail(ws, 1002)


@case("5.2", "pong in 2 fragments: 1002")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_PONG, b"fragment1", fin=False)
    ws.send_frame(OP_CONT, b"fragment2")
    c.expect_fail(ws, 1002)


@case("5.2b", "close with FIN=0: 1002")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_CLOSE, close_payload(1000), fin=False)
    c.expect_fail(ws, 1002)


def _frag_text(mode):
    def run(c):
        ws = c.connect()
        a = build_frame(OP_TEXT, b"fragment1", fin=False)
        b = build_frame(OP_CONT, b"fragment2")
        if mode == "one":
            ws.send(a + b, "text FIN=0 + cont")
        elif mode == "frames":
            ws.send(a, "text FIN=0")
            ws.wait(0.05)
            ws.send(b, "cont FIN=1")
        else:
            ws.send_chunked(a + b, 1, 0.0, "text FIN=0 + cont")
        c.expect(ws, [("text", b"fragment1fragment2")])
        c.close_ok(ws)
    return run


add_case("5.3", "text in 2 fragments (one write)", _frag_text("one"))
add_case("5.4", "text in 2 fragments (two writes with a pause)", _frag_text("frames"))
add_case("5.5", "text in 2 fragments written 1 byte at a time", _frag_text("bytes"))


def _frag_ping(mode):
    def run(c):
        ws = c.connect()
        parts = [build_frame(OP_TEXT, b"fragment1", fin=False), build_frame(OP_PING, b"ping payload"),
                 build_frame(OP_CONT, b"fragment2")]
        if mode == "one":
            ws.send(b"".join(parts), "text FIN=0, ping, cont")
        elif mode == "frames":
            for p in parts:
                ws.send(p, "frame")
                ws.wait(0.03)
        else:
            ws.send_chunked(b"".join(parts), 1, 0.0, "text FIN=0, ping, cont")
        c.expect(ws, [("pong", b"ping payload"), ("text", b"fragment1fragment2")])
        c.close_ok(ws)
    return run


add_case("5.6", "text in 2 fragments with a ping between (one write): pong, then the message",
         _frag_ping("one"))
add_case("5.7", "as 5.6, one write per frame with pauses", _frag_ping("frames"))
add_case("5.8", "as 5.6, 1 byte at a time", _frag_ping("bytes"))


def _orphan_cont(fin, mode):
    def run(c):
        ws = c.connect()
        data = build_frame(OP_CONT, b"non-continuation payload", fin=fin) + build_frame(OP_TEXT, b"Hello, world!")
        if mode == "one":
            ws.send(data, "cont FIN=%d + text" % fin)
        elif mode == "frames":
            ws.send(data[:len(data) - 19], "cont")
            ws.wait(0.03)
            ws.send(data[len(data) - 19:], "text")
        else:
            ws.send_chunked(data, 1, 0.0, "cont FIN=%d + text" % fin)
        c.expect_fail(ws, 1002)
    return run


add_case("5.9", "continuation (FIN=1) with nothing to continue: 1002", _orphan_cont(True, "one"))
add_case("5.10", "as 5.9, frames written separately", _orphan_cont(True, "frames"))
add_case("5.11", "as 5.9, 1 byte at a time", _orphan_cont(True, "bytes"))
add_case("5.12", "continuation (FIN=0) with nothing to continue: 1002", _orphan_cont(False, "one"))
add_case("5.13", "as 5.12, frames written separately", _orphan_cont(False, "frames"))
add_case("5.14", "as 5.12, 1 byte at a time", _orphan_cont(False, "bytes"))


@case("5.15", "complete fragmented text, then a continuation FIN=0 with nothing to continue: "
      "echo, then 1002")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"fragment1", fin=False) + build_frame(OP_CONT, b"fragment2") +
            build_frame(OP_CONT, b"fragment3", fin=False) + build_frame(OP_TEXT, b"fragment4"),
            "text FIN=0, cont, cont FIN=0, text")
    c.expect_fail(ws, 1002, before=[("text", b"fragment1fragment2")])


@case("5.16", "continuation FIN=0, text FIN=0, continuation FIN=1 (twice): 1002")
def _(c):
    ws = c.connect()
    seq = build_frame(OP_CONT, b"fragment1", fin=False) + build_frame(OP_TEXT, b"fragment2", fin=False) + \
        build_frame(OP_CONT, b"fragment3")
    ws.send(seq + seq, "cont FIN=0, text FIN=0, cont (x2)")
    c.expect_fail(ws, 1002)


@case("5.17", "continuation FIN=1, text FIN=0, continuation FIN=1 (twice): 1002")
def _(c):
    ws = c.connect()
    seq = build_frame(OP_CONT, b"fragment1") + build_frame(OP_TEXT, b"fragment2", fin=False) + \
        build_frame(OP_CONT, b"fragment3")
    ws.send(seq + seq, "cont, text FIN=0, cont (x2)")
    c.expect_fail(ws, 1002)


@case("5.18", "text FIN=0 then a new text frame before the message ended: 1002")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"fragment1", fin=False) + build_frame(OP_TEXT, b"fragment2"),
            "text FIN=0, text")
    c.expect_fail(ws, 1002)


@case("5.18b", "binary FIN=0 then a text frame before the message ended: 1002")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_BIN, b"\x01", fin=False) + build_frame(OP_TEXT, b"x"), "binary FIN=0, text")
    c.expect_fail(ws, 1002)


def _five_frags(one_write):
    def run(c):
        ws = c.connect()
        frames = [build_frame(OP_TEXT, b"fragment1", fin=False), build_frame(OP_CONT, b"fragment2", fin=False),
                  build_frame(OP_PING, b"pongme 1!"), build_frame(OP_CONT, b"fragment3", fin=False),
                  build_frame(OP_CONT, b"fragment4", fin=False), build_frame(OP_PING, b"pongme 2!"),
                  build_frame(OP_CONT, b"fragment5")]
        if one_write:
            ws.send(b"".join(frames), "5 fragments + 2 pings")
            c.expect(ws, [("pong", b"pongme 1!"), ("pong", b"pongme 2!"),
                          ("text", b"fragment1fragment2fragment3fragment4fragment5")])
        else:
            ws.send(b"".join(frames[:3]), "frags 1-2 + ping 1")
            c.expect(ws, [("pong", b"pongme 1!")], timeout=1.0, what="pong 1 while the message is open")
            ws.wait(0.2)
            ws.send(b"".join(frames[3:6]), "frags 3-4 + ping 2")
            c.expect(ws, [("pong", b"pongme 2!")], timeout=1.0, what="pong 2 while the message is open")
            ws.wait(0.2)
            ws.send(frames[6], "frag 5")
            c.expect(ws, [("text", b"fragment1fragment2fragment3fragment4fragment5")])
        c.close_ok(ws)
    return run


add_case("5.19", "text in 5 fragments with 2 pings between, pauses: each pong before the end", _five_frags(False))
add_case("5.20", "as 5.19 in one write", _five_frags(True))


def _frag_n(op, n, total):
    def run(c):
        payload = bytes((i * 31 + 7) & 0x7F for i in range(total)) if op == OP_TEXT else os.urandom(total)
        ws = c.connect()
        step = max(1, -(-total // n))
        parts = [payload[i:i + step] for i in range(0, total, step)] or [b""]
        while len(parts) < n:
            parts.append(b"")
        data = b""
        for i, p in enumerate(parts):
            data += build_frame(op if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
        ws.send(data, "%s in %d fragments" % (opname(op), len(parts)))
        c.expect(ws, [(opname(op), payload)])
        c.close_ok(ws)
    return run


for _j, (_n, _t) in enumerate([(1, 100), (2, 100), (3, 1000), (10, 1000), (100, 10000), (1000, 100000)]):
    add_case("5.21.%d" % (_j + 1), "text of %d bytes in %d fragments" % (_t, _n), _frag_n(OP_TEXT, _n, _t))
    add_case("5.22.%d" % (_j + 1), "binary of %d bytes in %d fragments" % (_t, _n), _frag_n(OP_BIN, _n, _t))


@case("6.1.1", "empty text message echoed")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_TEXT, b"")
    c.expect(ws, [("text", b"")])
    c.close_ok(ws)


@case("6.1.2", "text message of 3 empty fragments echoed as one empty message")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"", fin=False) + build_frame(OP_CONT, b"", fin=False) + build_frame(OP_CONT, b""),
            "3 empty fragments")
    c.expect(ws, [("text", b"")])
    c.close_ok(ws)


@case("6.1.3", "empty, non-empty, empty fragments echoed as the middle payload")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"", fin=False) + build_frame(OP_CONT, b"middle frame payload", fin=False) +
            build_frame(OP_CONT, b""), "empty + payload + empty")
    c.expect(ws, [("text", b"middle frame payload")])
    c.close_ok(ws)


@case("6.1.4", "binary of empty fragments echoed as an empty binary message")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_BIN, b"", fin=False) + build_frame(OP_CONT, b""), "2 empty binary fragments")
    c.expect(ws, [("binary", b"")])
    c.close_ok(ws)


# ---------------------------------------------------------------- 6 UTF-8

HELLO_UTF8 = "Hello-µ@ßöäüàá-UTF-8!!".encode()
KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"


def _utf8_valid_frags(payload, sizes):
    def run(c):
        ws = c.connect()
        parts, off = [], 0
        for s in sizes:
            parts.append(payload[off:off + s])
            off += s
        if off < len(payload):
            parts.append(payload[off:])
        data = b"".join(build_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
                        for i, p in enumerate(parts))
        ws.send(data, "text in %d fragments" % len(parts))
        c.expect(ws, [("text", payload)])
        c.close_ok(ws)
    return run


add_case("6.2.1", "valid UTF-8 text with 2-byte code points in one frame", _echo_case(OP_TEXT, HELLO_UTF8))
add_case("6.2.2", "same text in 2 fragments split at a code point boundary",
         _utf8_valid_frags(HELLO_UTF8, [7]))
add_case("6.2.3", "same text in 1-byte fragments (fragments end inside code points)",
         _utf8_valid_frags(HELLO_UTF8, [1] * len(HELLO_UTF8)))
add_case("6.2.4", "κόσμε in 1-byte fragments", _utf8_valid_frags(KOSME, [1] * len(KOSME)))
add_case("6.2.5", "4-byte code point split across 2 fragments in the middle",
         _utf8_valid_frags(b"ab\xf0\x9f\x98\x80cd", [4]))

INVALID_EDITED = KOSME + b"\xed\xa0\x80" + b"edited"


@case("6.3.1", "invalid UTF-8 (surrogate) in one frame: 1007")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_TEXT, INVALID_EDITED)
    c.expect_fail(ws, 1007)


@case("6.3.2", "same invalid text in 1-byte fragments: 1007")
def _(c):
    ws = c.connect()
    p = INVALID_EDITED
    data = b"".join(build_frame(OP_TEXT if i == 0 else OP_CONT, p[i:i + 1], fin=(i == len(p) - 1))
                    for i in range(len(p)))
    ws.send(data, "1-byte fragments")
    c.expect_fail(ws, 1007)


def _failfast(part1, part2, part3, frames):
    """Autobahn 6.4.x: the first part must be accepted (no close within a
    pause); the connection must be failed with 1007 after the invalid part,
    at the latest when the message ends (fail-fast allowed, not required)."""
    def run(c):
        ws = c.connect()
        if frames:
            ws.send_frame(OP_TEXT, part1, fin=False)
        else:
            whole = build_frame(OP_TEXT, part1 + part2 + part3)
            hl = len(whole) - len(part1 + part2 + part3)
            ws.send(whole[:hl + len(part1)], "frame header + part 1")
        e = ws.next_event(0.3)
        if e.kind != "timeout":
            raise CaseFail("the valid first part must be accepted, got %r" % e)
        if frames:
            ws.send_frame(OP_CONT, part2, fin=False)
        else:
            ws.send(whole[hl + len(part1):hl + len(part1) + len(part2)], "part 2 (invalid)")
        e = ws.next_event(0.3)
        if e.kind == "timeout":
            if frames:
                ws.send_frame(OP_CONT, part3)
            else:
                ws.send(whole[hl + len(part1) + len(part2):], "part 3")
            e = ws.next_event()
        if e.kind != "close" or e.code != 1007:
            raise CaseFail("expected close 1007, got %r" % e)
        ws.send(build_frame(OP_CLOSE, close_payload(1007)), "close reply")
        if not ws.wait_eof(2.0):
            raise CaseFail("TCP not closed 2 s after the close handshake")
    return run


add_case("6.4.1", "3 fragments, the 2nd makes the text invalid (U+110000): 1007 (fail-fast optional)",
         _failfast(KOSME, b"\xf4\x90\x80\x80", b"edited", True))
add_case("6.4.2", "3 fragments, the 2nd starts with an invalid byte: 1007",
         _failfast(KOSME + b"\xf4", b"\x90\x80\x80", b"edited", True))
add_case("6.4.3", "one frame written in 3 parts, the 2nd part invalid: 1007",
         _failfast(KOSME, b"\xf4\x90\x80\x80", b"edited", False))
add_case("6.4.4", "one frame written in 3 parts, only the first invalid byte in the 2nd: 1007",
         _failfast(KOSME + b"\xf4", b"\x90", b"\x80\x80edited", False))


def utf8_vectors():
    """(category, valid, bytes) from the classic UTF-8 decoder stress cases;
    validity is checked against Python's strict decoder."""
    V = []

    def add(cat, items):
        for it in items:
            V.append((cat, it))
    add("some valid UTF-8 sequences", [b"hello\x24world", b"hello\xc2\xa2world", b"hello\xe2\x82\xacworld",
                                       b"hello\xf0\xa4\xad\xa2world", KOSME])
    add("prefixes of a valid multi-byte string", [KOSME[:i] for i in range(1, len(KOSME) + 1)])
    add("first sequence of each length", [b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"])
    add("first sequence of length 5/6 (invalid)", [b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"])
    add("last sequence of each length", [b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"])
    add("last sequence of length 4/5/6 beyond U+10FFFF", [b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf",
                                                          b"\xfd\xbf\xbf\xbf\xbf\xbf"])
    add("other boundaries", [b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf4\x8f\xbf\xbf",
                             b"\xf4\x90\x80\x80"])
    add("unexpected continuation bytes", [b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf",
                                          b"\x80\xbf\x80\xbf\x80", b"\x80\xbf\x80\xbf\x80\xbf",
                                          bytes(range(0x80, 0xc0))])
    add("lonely start bytes", [b"".join(bytes([i, 0x20]) for i in range(lo, hi))
                               for lo, hi in ((0xc0, 0xe0), (0xe0, 0xf0), (0xf0, 0xf8), (0xf8, 0xfc), (0xfc, 0xfe))])
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
               b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    add("last continuation byte missing", missing)
    add("concatenated incomplete sequences", [b"".join(missing)])
    add("impossible bytes", [b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"])
    add("overlong ASCII", [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf",
                           b"\xfc\x80\x80\x80\x80\xaf"])
    add("maximum overlong", [b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xf8\x87\xbf\xbf\xbf",
                             b"\xfc\x83\xbf\xbf\xbf\xbf"])
    add("overlong NUL", [b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf8\x80\x80\x80\x80",
                         b"\xfc\x80\x80\x80\x80\x80"])
    add("single UTF-16 surrogates", [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
                                     b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"])
    add("paired UTF-16 surrogates", [h + l for h in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80",
                                                     b"\xed\xaf\xbf") for l in (b"\xed\xb0\x80", b"\xed\xbf\xbf")])
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in (0xf0, 0xf1, 0xf2, 0xf3, 0xf4):
        for z2 in (0x8f, 0x9f, 0xaf, 0xbf):
            if z1 == 0xf4 and z2 != 0x8f:
                continue
            for z3 in (0xbe, 0xbf):
                zz = bytes([z1, z2, 0xbf, z3])
                if zz not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):
                    nonchars.append(zz)
    add("non-characters (valid UTF-8)", nonchars)
    add("specials (valid)", [b"\xef\xbf\xb9", b"\xef\xbf\xba", b"\xef\xbf\xbb", b"\xef\xbf\xbc", b"\xef\xbf\xbd"])
    add("beyond U+10FFFF in 4 bytes", [b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf7\xbf\xbf\xbf"])
    add("truncated at the end of the message", [b"ok\xe2\x82", b"ok\xf0\x9f\x98", b"ok\xc3"])
    out = []
    for cat, b in V:
        try:
            b.decode("utf-8", "strict")
            ok = True
        except UnicodeDecodeError:
            ok = False
        out.append((cat, ok, b))
    return out


def _utf8_vector_case(valid, payload):
    def run(c):
        ws = c.connect()
        ws.send_frame(OP_TEXT, payload)
        if valid:
            c.expect(ws, [("text", payload)])
            c.close_ok(ws)
        else:
            c.expect_fail(ws, 1007)
    return run


_cats = {}
for _cat, _valid, _b in utf8_vectors():
    _k = _cats.setdefault(_cat, [len(_cats) + 5, 0])
    _k[1] += 1
    add_case("6.%d.%d" % (_k[0], _k[1]), "%s: %s %s" % (_cat, _b[:12].hex(" ") + (" ..." if len(_b) > 12 else ""),
                                                    "valid, echoed" if _valid else "invalid: 1007"),
             _utf8_vector_case(_valid, _b))


@case("6.30", "invalid UTF-8 in the 1st fragment of an unfinished message: 1007 no later than the end")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_TEXT, b"abc\xff", fin=False)
    e = ws.next_event(0.3)
    if e.kind == "timeout":
        ws.send_frame(OP_CONT, b"def")
        e = ws.next_event()
    if e.kind != "close" or e.code != 1007:
        raise CaseFail("expected close 1007, got %r" % e)


@case("6.31", "code point split across fragments, then invalid continuation: 1007")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"ab\xe2", fin=False) + build_frame(OP_CONT, b"\x28\xa1"), "e2 | 28 a1")
    c.expect_fail(ws, 1007)


@case("6.32", "message ending inside a code point split across fragments: 1007")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"ab\xf0\x9f", fin=False) + build_frame(OP_CONT, b"\x98"), "f0 9f | 98 (end)")
    c.expect_fail(ws, 1007)


@case("6.33", "binary messages are not UTF-8 checked")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_BIN, b"\xff\xfe\xed\xa0\x80\xc0\x80")
    c.expect(ws, [("binary", b"\xff\xfe\xed\xa0\x80\xc0\x80")])
    c.close_ok(ws)


# ---------------------------------------------------------------- 7 close

@case("7.1.1", "text echoed, then a clean close 1000")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_TEXT, b"Hello World")
    c.expect(ws, [("text", b"Hello World")])
    c.close_ok(ws)


@case("7.1.2", "two close frames: one close reply, TCP closed")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_CLOSE, close_payload(1000)), "close x2")
    e = ws.next_event()
    if e.kind != "close" or e.code != 1000:
        raise CaseFail("expected close 1000, got %r" % e)
    e = ws.next_event(2.0)
    if e.kind not in ("eof", "reset"):
        raise CaseFail("after the close reply expected the TCP close, got %r" % e)


def _data_after_close(extra, label):
    def run(c):
        ws = c.connect()
        ws.send(build_frame(OP_CLOSE, close_payload(1000)) + extra, "close + " + label)
        e = ws.next_event()
        if e.kind != "close" or e.code != 1000:
            raise CaseFail("expected close 1000, got %r" % e)
        e = ws.next_event(2.0)
        if e.kind not in ("eof", "reset"):
            raise CaseFail("frames after close must be ignored; expected the TCP close, got %r" % e)
    return run


add_case("7.1.3", "close, then ping: no pong, close reply, TCP closed",
         _data_after_close(build_frame(OP_PING, b"Hello World"), "ping"))
add_case("7.1.4", "close, then text: not echoed", _data_after_close(build_frame(OP_TEXT, b"Hello World"), "text"))
add_case("7.1.4b", "close, then invalid frames (RSV, bad opcode): ignored, still close 1000",
         _data_after_close(build_frame(OP_TEXT, b"x", rsv=7) + build_frame(5, b"zz"), "garbage"))


@case("7.1.5", "fragment 1, close, fragment 2: no echo, close 1000")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"fragment1", fin=False) + build_frame(OP_CLOSE, close_payload(1000)) +
            build_frame(OP_CONT, b"fragment2"), "text FIN=0, close, cont")
    e = ws.next_event()
    if e.kind != "close" or e.code != 1000:
        raise CaseFail("expected close 1000, got %r" % e)
    if not ws.wait_eof(2.0):
        raise CaseFail("TCP not closed after the close handshake")


@case("7.1.6", "256 KB text, close, ping in one write: whole echo (if any) before close 1000, no pong")
def _(c):
    big = b"BAsd7&jh23" * 26214 + b"BAsd"
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, big) + build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_PING, b"x"),
            "text 256K, close, ping")
    e = ws.next_event(5.0)
    if e.kind == "text":
        if e.data != big:
            raise CaseFail("echo of the 256 KB text is not the text sent (len %d)" % len(e.data))
        e = ws.next_event(5.0)
    if e.kind != "close" or e.code != 1000:
        raise CaseFail("expected close 1000, got %r" % e)
    e = ws.next_event(2.0)
    if e.kind not in ("eof", "reset"):
        raise CaseFail("expected TCP close after the close reply, got %r" % e)


@case("7.3.1", "close without payload: answered by a close (empty or 1000), TCP closed")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_CLOSE, b""), "close (empty)")
    e = ws.next_event()
    if e.kind != "close" or e.code not in (None, 1000):
        raise CaseFail("expected an empty close or close 1000, got %r" % e)
    if not ws.wait_eof(2.0):
        raise CaseFail("TCP not closed after the close handshake")


@case("7.3.2", "close with a 1-byte payload: 1002")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_CLOSE, b"\x03"), "close payload 03")
    c.expect_fail(ws, 1002)


add_case("7.3.3", "close 1000 without reason: close 1000",
         lambda c: c.close_ok(c.connect(), 1000))
add_case("7.3.4", "close 1000 with a reason: close 1000",
         lambda c: c.close_ok(c.connect(), 1000, b"Hello World!"))
add_case("7.3.5", "close 1000 with a 123-byte reason (125-byte payload): close 1000",
         lambda c: c.close_ok(c.connect(), 1000, b"*" * 123))


@case("7.3.6", "close with a 126-byte payload (control frame too long): 1002")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_CLOSE, close_payload(1000, b"*" * 124)), "close len=126")
    c.expect_fail(ws, 1002)


@case("7.5.1", "close 1000 with an invalid UTF-8 reason: 1007")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_CLOSE, close_payload(1000, KOSME + b"\xed\xa0\x80" + b"edited")), "close bad reason")
    c.expect_fail(ws, 1007)


for _j, _code in enumerate([1000, 1001, 3000, 4999], 1):
    add_case("7.7.%d" % _j, "close with valid code %d: the code is echoed" % _code,
             (lambda code: lambda c: c.close_ok(c.connect(), code))(_code))
for _j, _code in enumerate([1002, 1003, 1007, 1008, 1009, 1010, 1011, 3999, 4000], 5):
    add_case("7.7.%d" % _j, "close with valid code %d: echoed (or 1000), never 1002" % _code,
             (lambda code: lambda c: c.close_ok(c.connect(), code, want_codes=(code, 1000)))(_code))
for _j, _code in enumerate([0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535], 1):
    add_case("7.9.%d" % _j, "close with invalid code %d: 1002" % _code,
             (lambda code: lambda c: (lambda ws: (ws.send(build_frame(OP_CLOSE, close_payload(code)),
                                                          "close code %d" % code),
                                                  c.expect_fail(ws, 1002)))(c.connect()))(_code))


@case("7.10", "server closes the TCP connection after a clean close, before the client does")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_CLOSE, close_payload(1000))
    e = ws.next_event()
    if e.kind != "close":
        raise CaseFail("expected close, got %r" % e)
    t0 = time.monotonic()
    if not ws.wait_eof(2.0):
        raise CaseFail("TCP still open 2 s after the close handshake")
    if ws.reset:
        raise CaseFail("server reset the connection (%s) instead of a clean FIN" % ws.reset)
    return time.monotonic() - t0


# ---------------------------------------------------------------- 9 limits / performance (raised limits)

def _payload(op, size):
    if op == OP_TEXT:
        unit = "The quick brown fox jumps over the lazy dog \u00b5\u20ac\U0001f600 ".encode()
        p = (unit * (size // len(unit) + 1))[:size]
        while True:  # cut on a character boundary, keep the size within 3 bytes
            try:
                p.decode()
                return p
            except UnicodeDecodeError:
                p = p[:-1]
    return (os.urandom(65536) * (size // 65536 + 1))[:size]


def _big_case(op, size, frag=0, chop=None, budget=10.0):
    """Echo of one large message on the raised-limits gateway: frag splits
    it into frames of that many bytes, chop cuts the bytes into TCP writes of
    that size; the echo must be complete and exact within budget seconds."""
    def run(c):
        if not c.big_port:
            raise CaseFail("no gateway with raised limits (--big-port)")
        payload = _payload(op, size)
        ws = c.connect(big=True)
        ws.timeout = budget
        t0 = time.monotonic()
        if frag:
            parts = [payload[i:i + frag] for i in range(0, len(payload), frag)]
            data = b"".join(build_frame(op if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
                            for i, p in enumerate(parts))
            label = "%s %d bytes in %d fragments" % (opname(op), len(payload), len(parts))
        else:
            data = build_frame(op, payload)
            label = "%s %d bytes" % (opname(op), len(payload))
        if chop:
            ws.send_chunked(data, chop, 0.0, label)
        else:
            ws.send(data, label)
        e = ws.next_event(max(0.5, budget - (time.monotonic() - t0)))
        dt = time.monotonic() - t0
        if e.kind != opname(op) or e.data != payload:
            raise CaseFail("expected the exact echo of %d bytes within %.0f s, got %r after %.2f s" % (
                len(payload), budget, e, dt))
        c.close_ok(ws)
        return dt
    return run


def _size_name(n):
    return "%d MB" % (n >> 20) if n >= 1 << 20 else ("%d KB" % (n >> 10) if n >= 1024 else "%d B" % n)


for _op, _b in ((OP_TEXT, 1), (OP_BIN, 2)):
    for _j, _size in enumerate((64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20), 1):
        add_case("9.%d.%d" % (_b, _j), "%s message of %s in one frame echoed within %d s" % (
            opname(_op), _size_name(_size), 15 if _size > 4 << 20 else 8),
            _big_case(_op, _size, budget=15 if _size > 4 << 20 else 8), big=True)
for _op, _b in ((OP_TEXT, 3), (OP_BIN, 4)):
    for _j, _frag in enumerate((64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20), 1):
        add_case("9.%d.%d" % (_b, _j), "%s message of 4 MB in fragments of %s echoed within 10 s" % (
            opname(_op), _size_name(_frag)), _big_case(_op, 4 << 20, frag=_frag, budget=10), big=True)
for _op, _b in ((OP_TEXT, 5), (OP_BIN, 6)):
    for _j, _chop in enumerate((64, 128, 256, 512, 1024, 2048), 1):
        add_case("9.%d.%d" % (_b, _j), "%s message of 1 MB written in TCP chunks of %d bytes" % (
            opname(_op), _chop), _big_case(_op, 1 << 20, chop=_chop, budget=10), big=True)


def _many_small(op, count, size, budget):
    def run(c):
        ws = c.connect(big=True)
        p = (b"x" * size) if op == OP_TEXT else os.urandom(size)
        t0 = time.monotonic()
        ws.send(b"".join(build_frame(op, p) for _ in range(count)), "%d x %s len=%d" % (count, opname(op), size))
        for i in range(count):
            e = ws.next_event(max(0.5, budget - (time.monotonic() - t0)))
            if e.kind != opname(op) or e.data != p:
                raise CaseFail("message %d of %d: expected the echo, got %r" % (i + 1, count, e))
        dt = time.monotonic() - t0
        c.close_ok(ws)
        return dt
    return run


for _op, _b in ((OP_TEXT, 7), (OP_BIN, 8)):
    for _j, _size in enumerate((0, 16, 64, 256, 1024, 4096), 1):
        add_case("9.%d.%d" % (_b, _j), "1000 %s messages of %d bytes pipelined, all echoed in order within 5 s" % (
            opname(_op), _size), _many_small(_op, 1000, _size, 5), big=True)
for _j, (_op, _size) in enumerate(((OP_TEXT, 1 << 20), (OP_BIN, 1 << 20), (OP_TEXT, 16 << 20),
                                   (OP_BIN, 16 << 20)), 1):
    add_case("9.9.%d" % _j, "%s message of %s in 64 KB fragments echoed within %d s" % (
        opname(_op), _size_name(_size), 15 if _size > 4 << 20 else 8),
        _big_case(_op, _size, frag=65536, budget=15 if _size > 4 << 20 else 8), big=True)
add_case("9.9.5", "binary 4 MB written in irregular TCP writes (64 KB, 1, 100000, 7, 1400 bytes) echoed",
         _big_case(OP_BIN, 4 << 20, chop=[65536, 1, 100000, 7, 1400], budget=10), big=True)


# ---------------------------------------------------------------- 10 misc / auto-fragmentation

@case("10.1.1", "text of 65536 bytes in 1300-byte fragments echoed as one message")
def _(c):
    payload = b"*" * 65536
    ws = c.connect()
    parts = [payload[i:i + 1300] for i in range(0, len(payload), 1300)]
    ws.send(b"".join(build_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
                     for i, p in enumerate(parts)), "65536 bytes in %d fragments" % len(parts))
    c.expect(ws, [("text", payload)])
    c.close_ok(ws)


def _split_everywhere(n, op):
    def run(c):
        payload = (b"split" * (n // 5 + 1))[:n]
        ws = c.connect()
        f = build_frame(op, payload)
        hl = len(f) - n
        for cut in range(1, hl + 2):
            if cut >= len(f):
                break
            ws.send(f[:cut], "frame bytes [0:%d]" % cut)
            ws.wait(0.01)
            ws.send(f[cut:], "frame bytes [%d:]" % cut)
            c.expect(ws, [(opname(op), payload)], what="frame split after byte %d of a %d-byte header" % (cut, hl))
        c.close_ok(ws)
    return run


add_case("10.2.1", "7-bit length frame split in 2 TCP writes at every header offset",
         _split_everywhere(100, OP_TEXT))
add_case("10.2.2", "16-bit length frame split in 2 TCP writes at every header offset",
         _split_everywhere(300, OP_BIN))
add_case("10.2.3", "64-bit length frame split in 2 TCP writes at every header offset",
         _split_everywhere(70000, OP_TEXT))


@case("10.2.4", "close frame split at every header offset: still a clean close")
def _(c):
    for cut in range(1, 9):
        ws = c.connect()
        f = build_frame(OP_CLOSE, close_payload(1000, b"bye"))
        ws.send(f[:cut], "close [0:%d]" % cut)
        ws.wait(0.01)
        ws.send(f[cut:], "close [%d:]" % cut)
        e = ws.next_event()
        if e.kind != "close" or e.code != 1000:
            raise CaseFail("split after byte %d: expected close 1000, got %r" % (cut, e))
        ws.wait_eof(2.0)
        ws.close_tcp()


@case("10.3.1", "several frames in one TCP write, the last one split: all echoed in order")
def _(c):
    ws = c.connect()
    fs = [build_frame(OP_TEXT, b"m%d" % i) for i in range(5)]
    blob = b"".join(fs)
    ws.send(blob[:-3], "5 frames minus 3 bytes")
    ws.wait(0.02)
    ws.send(blob[-3:], "last 3 bytes")
    c.expect(ws, [("text", b"m%d" % i) for i in range(5)])
    c.close_ok(ws)


@case("10.4.1", "handshake with an unsupported Sec-WebSocket-Version refused, advertising 13")
def _(c):
    ws = WSClient(c.port, c.path, timeout=c.timeout)
    c.clients.append(ws)
    ws.connect_tcp()
    st = ws.handshake(version="25", expect_101=False)
    if st == 101:
        raise CaseFail("server switched protocols for Sec-WebSocket-Version: 25")
    if st < 400:
        raise CaseFail("status %d, want a 4xx (426)" % st)
    v = ws.resp_headers.get("sec-websocket-version", "")
    if "13" not in [x.strip() for x in v.split(",")]:
        raise CaseFail("status %d without 'Sec-WebSocket-Version: 13' (headers %r)" % (st, ws.resp_headers))


@case("10.4.2", "handshake without Sec-WebSocket-Key refused with 400")
def _(c):
    ws = WSClient(c.port, c.path, timeout=c.timeout)
    c.clients.append(ws)
    ws.connect_tcp()
    st = ws.handshake(key=False, expect_101=False)
    if st != 400:
        raise CaseFail("status %d, want 400" % st)


@case("10.4.3", "handshake with a malformed Sec-WebSocket-Key (not 16 bytes base64) refused with 400")
def _(c):
    ws = WSClient(c.port, c.path, timeout=c.timeout)
    c.clients.append(ws)
    ws.connect_tcp()
    st = ws.handshake(key="c2hvcnQ=", expect_101=False)
    if st != 400:
        raise CaseFail("status %d, want 400" % st)


# ---------------------------------------------------------------- hardening (default limits)

@case("H.1", "unmasked client text frame: 1002")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"Hello, world!", mask=False), "unmasked text")
    c.expect_fail(ws, 1002)


@case("H.2", "unmasked client ping: 1002, no pong")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_PING, b"x", mask=False), "unmasked ping")
    c.expect_fail(ws, 1002)


def _huge_len(n, form=64, op=OP_BIN):
    def run(c):
        ws = c.connect()
        f = build_frame(op, b"", length=n, len_form=form)
        ws.send(f + b"\x00" * 64, "%s declaring %d bytes" % (opname(op), n))
        c.expect_fail(ws, (1009, 1002))
        c.alive_check()
    return run


add_case("H.3", "binary frame declaring 2^63 bytes: 1009 or 1002, gateway keeps serving", _huge_len(1 << 63))
add_case("H.4", "binary frame declaring 2^64-1 bytes: 1009 or 1002, gateway keeps serving",
         _huge_len((1 << 64) - 1))
add_case("H.5", "text frame declaring 2^62 bytes: 1009, gateway keeps serving",
         (lambda c: (lambda ws: (ws.send(build_frame(OP_TEXT, b"", length=1 << 62, len_form=64), "text 2^62"),
                                 c.expect_fail(ws, 1009), c.alive_check()))(c.connect())))
add_case("H.6", "binary frame declaring 2^32+1 bytes: 1009",
         (lambda c: (lambda ws: (ws.send(build_frame(OP_BIN, b"", length=(1 << 32) + 1, len_form=64), "bin 2^32+1"),
                                 c.expect_fail(ws, 1009)))(c.connect())))


@case("H.7", "text message of 1 MiB + 1 in one frame (over the default 1 MB limit): 1009")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"a" * ((1 << 20) + 1)), "text 1 MiB + 1", stop_on_close=True)
    c.expect_fail(ws, 1009)


@case("H.8", "binary of 1 000 001 bytes (limit + 1) in one frame: 1009")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_BIN, b"\x01" * 1000001), "binary 1000001", stop_on_close=True)
    c.expect_fail(ws, 1009)


@case("H.9", "binary of exactly 1 000 000 bytes (the limit) is accepted")
def _(c):
    ws = c.connect()
    p = os.urandom(1000000)
    ws.send(build_frame(OP_BIN, p), "binary 1000000")
    c.expect(ws, [("binary", p)], timeout=5)
    c.close_ok(ws)


@case("H.10", "message over 1 MB built from 600 KB fragments: 1009")
def _(c):
    ws = c.connect()
    part = b"b" * 600000
    ws.send(build_frame(OP_TEXT, part, fin=False) + build_frame(OP_CONT, part, fin=False) +
            build_frame(OP_CONT, part), "3 x 600000 fragments", stop_on_close=True)
    c.expect_fail(ws, 1009)


@case("H.11", "100 000 one-byte continuation frames: refused (1009 or 1008), gateway keeps serving")
def _(c):
    ws = c.connect()
    frames = [build_frame(OP_TEXT, b"a", fin=False)]
    one = build_frame(OP_CONT, b"a", fin=False, key=b"\x01\x02\x03\x04")
    frames.append(one * 99998)
    frames.append(build_frame(OP_CONT, b"a"))
    ws.send(b"".join(frames), "text FIN=0 + 99 999 one-byte continuations", stop_on_close=True)
    c.expect_fail(ws, (1009, 1008))
    c.alive_check()


@case("H.12", "control frame declaring 126 bytes via the 64-bit length form: 1002")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_PING, b"p" * 126, len_form=64), "ping len=126 (64-bit form)")
    c.expect_fail(ws, 1002)


@case("H.14", "after failing a connection the server drops TCP even if the client never answers the close")
def _(c):
    ws = c.connect()
    ws.send_frame(OP_TEXT, b"x", rsv=2)
    e = ws.next_event()
    if e.kind != "close" or e.code != 1002:
        raise CaseFail("expected close 1002, got %r" % e)
    if not ws.wait_eof(3.0):
        raise CaseFail("server kept the TCP connection open 3 s after failing it (no close reply sent)")


@case("H.15", "masked frame with an all-zero masking key is valid and echoed")
def _(c):
    ws = c.connect()
    ws.send(build_frame(OP_TEXT, b"zero key", key=b"\0\0\0\0"), "text, mask key 00000000")
    c.expect(ws, [("text", b"zero key")])
    c.close_ok(ws)


@case("H.16", "gateway still serves after all the abuse")
def _(c):
    c.alive_check()


# =====================================================================

def healthy(admin_ports, timeout=1.5):
    """True when every admin port answers GET /healthz with 200."""
    for p in admin_ports:
        try:
            s = socket.create_connection(("127.0.0.1", p), timeout=timeout)
            s.settimeout(timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            s.close()
            if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
                return False
        except OSError:
            return False
    return True


def run_case_list(cases, ctx, only=None, enabled=lambda entry: True, admin_ports=(), after=None):
    """Runs (id, desc, flag, fn) cases: prints "ok - ID desc" or
    "not ok - ID desc" and "# " diagnostics (ctx.diag_lines()), then
    "# cases-complete". ctx has begin(), diag_lines() and end().
    admin_ports: after each case the gateways must still answer /healthz;
    when one does not, prints "# gateway-down-after ID" and returns 3 (the
    driver restarts it and resumes with after=ID: cases up to and including
    that one are skipped)."""
    only = re.compile(only) if only else None
    n_run = n_fail = 0
    t_start = time.monotonic()
    skipping = after is not None
    for entry in cases:
        cid, desc, _, fn = entry
        if skipping:
            skipping = cid != after
            continue
        if (only and not only.search(cid)) or not enabled(entry):
            continue
        ctx.begin()
        t0 = time.monotonic()
        err, tb = None, None
        try:
            took = fn(ctx)
            if isinstance(took, float) and took >= 0.2:
                print("# %s: %.2f s" % (cid, took))
        except CaseFail as e:
            err = str(e)
        except Exception as e:  # a bug here or an unexpected server behaviour
            err = "unexpected %s: %s" % (e.__class__.__name__, e)
            tb = traceback.format_exc()
        dt = time.monotonic() - t0
        n_run += 1
        name = "%s %s" % (cid, desc)
        if err is None:
            print("ok - %s" % name)
        else:
            n_fail += 1
            print("not ok - %s" % name)
            for k, line in enumerate(err.splitlines() or [""]):
                print("# %s%s" % (line, " (%.2f s)" % dt if k == 0 else ""))
            for line in ctx.diag_lines():
                print("#   %s" % line)
            if tb:
                for line in tb.rstrip().splitlines()[-6:]:
                    print("#   %s" % line)
        ctx.end()
        sys.stdout.flush()
        if admin_ports and not healthy(admin_ports):
            print("# gateway-down-after %s" % cid)
            print("# %d cases run, %d failed, then the gateway stopped answering /healthz" % (n_run, n_fail))
            sys.stdout.flush()
            return 3
    print("# %d cases, %d failed, %.1f s" % (n_run, n_fail, time.monotonic() - t_start))
    print("# cases-complete")
    sys.stdout.flush()
    return 0


def run_cases(args):
    ctx = Ctx(args.port, args.big_port, args.path, args.timeout)
    return run_case_list(CASES, ctx, args.only, lambda e: not e[2] or bool(args.big_port),
                         args.admin_port or (), args.after)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    a = sub.add_parser("cases")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--big-port", type=int, default=0)
    a.add_argument("--path", default="/ws-echo")
    a.add_argument("--only", default=None)
    a.add_argument("--timeout", type=float, default=3.0)
    a.add_argument("--list", action="store_true")
    a.add_argument("--admin-port", type=int, action="append",
                   help="check this gateway's /healthz after each case (repeatable)")
    a.add_argument("--after", default=None, help="resume after this case id")
    e = sub.add_parser("echo")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--path", default="/ws-echo")
    e.add_argument("--text", default="hello")
    args = ap.parse_args()
    if args.cmd == "cases":
        if args.list:
            for cid, desc, big, _ in CASES:
                print("%s%s %s" % (cid, " [big]" if big else "", desc))
            return 0
        return run_cases(args)
    if args.cmd == "echo":
        try:
            ws = WSClient(args.port, args.path).open()
            ws.send_frame(OP_TEXT, args.text.encode())
            ev = ws.next_event(3.0)
            ws.close_tcp()
            print(repr(ev))
            return 0 if ev.kind == "text" and ev.data == args.text.encode() else 1
        except (HandshakeError, OSError) as ex:
            print("error: %s" % ex)
            return 1
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
