#!/usr/bin/python3
"""Hostile clients for tests/integ/85-hostile.t, written from HARDENING.md.

Each subcommand attacks a gateway on 127.0.0.1:PORT and prints one JSON line
with what it observed; the .t file decides pass or fail. Every socket has a
timeout, so nothing here can hang.
"""
import base64
import json
import os
import socket
import struct
import sys
import time

HOST = "127.0.0.1"


def out(**kw):
    print(json.dumps(kw), flush=True)


def connect(port, timeout=5.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_until_closed(s, limit=1 << 20):
    """Reads until EOF or reset; returns (bytes, closed)."""
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return data, True
    except socket.timeout:
        return data, False
    return data, False


def ws_open(port, path="/ws/socket.io/?EIO=4&transport=websocket", rcvbuf=None):
    if rcvbuf:
        # Set before connect(), so the small window is what TCP advertises.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(5)
        s.connect((HOST, port))
    else:
        s = connect(port)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise RuntimeError("closed during handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("handshake refused: " + head.split(b"\r\n")[0].decode())
    return s


def ws_frame(opcode, payload, fin=True, length=None):
    mask = os.urandom(4)
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return hdr + mask + masked


def ws_read(s):
    """One server frame: (opcode, payload), or (None, None) at EOF."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            c = s.recv(n - len(buf))
            if not c:
                raise EOFError
            buf += c
        return buf
    try:
        b0, b1 = exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", exact(8))[0]
        return b0 & 0x0F, exact(n)
    except (EOFError, ConnectionResetError):
        return None, None


def close_code(s):
    """Reads frames until a close frame or EOF; returns the close code or None."""
    while True:
        op, data = ws_read(s)
        if op is None:
            return None
        if op == 8:
            return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005


def cmd_silent(port, n, wait_s):
    """n connections that send nothing, plus one sending a byte per 100 ms:
    all must be closed by the header deadline."""
    socks = [connect(port, timeout=wait_s) for _ in range(n)]
    slow = connect(port, timeout=0.2)
    t0 = time.time()
    closed_slow = False
    req = b"GET /ws/socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
    i = 0
    while time.time() - t0 < wait_s:
        try:
            slow.sendall(req[i % len(req):i % len(req) + 1])
            i += 1
            d = slow.recv(4096)
            if d == b"" or d.startswith(b"HTTP/1.1 408"):
                closed_slow = True
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed_slow = True
            break
        time.sleep(0.1)
    closed = 0
    for s in socks:
        s.settimeout(max(0.1, wait_s - (time.time() - t0)))
        _, c = read_until_closed(s)
        closed += 1 if c else 0
    out(silent=n, closed=closed, slow_closed=closed_slow, elapsed=round(time.time() - t0, 2))


def cmd_headers(port):
    s = connect(port)
    many = "".join(f"X-H{i}: v\r\n" for i in range(2000))
    try:
        s.sendall(f"GET /ws/socket.io/?EIO=4&transport=polling HTTP/1.1\r\n{many}\r\n".encode())
    except (BrokenPipeError, ConnectionResetError):
        pass
    d1, _ = read_until_closed(s)
    s = connect(port)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    d2, _ = read_until_closed(s)
    s = connect(port)
    s.sendall(b"GET /ws/socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost x\r\n\r\n")
    d3, _ = read_until_closed(s)
    s = connect(port)
    s.sendall(b"POST /ws/socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\n"
              b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    d4, _ = read_until_closed(s)
    out(many=d1.split(b"\r\n")[0].decode(), long=d2.split(b"\r\n")[0].decode(),
        malformed=d3.split(b"\r\n")[0].decode(), smuggle=d4.split(b"\r\n")[0].decode())


class Sock(socket.socket):
    """A socket that can carry the Socket.IO sid it was given."""


def open_sio(port, token=None, rcvbuf=None):
    raw = ws_open(port, rcvbuf=rcvbuf)
    s = Sock(fileno=raw.detach())
    s.settimeout(5)
    op, data = ws_read(s)  # Engine.IO open
    assert op == 1 and data.startswith(b"0{"), data
    auth = json.dumps({"token": token}) if token else ""
    s.sendall(ws_frame(1, ("40" + auth).encode()))
    op, data = ws_read(s)
    assert op == 1 and data.startswith(b"40{"), data
    s.sio_sid = json.loads(data[2:])["sid"]
    return s


def cmd_badpackets(port):
    """Each malformed input closes its own connection with a reason; a
    bystander connection stays up and answers."""
    bystander = open_sio(port)
    results = {}
    cases = {
        "sio_garbage": ws_frame(1, b"4zzz"),
        "eio_type": ws_frame(1, b"9hello"),
        "placeholder_string_num": ws_frame(1, b'451-["x",{"_placeholder":true,"num":"0"}]'),
        "attachments_huge": ws_frame(1, b'4599999999-["x"]'),
        "rsv_bits": b"\xf1\x80" + os.urandom(4),
        "unmasked": b"\x81\x05hello",
        "len_2_63": b"\x82\xff" + struct.pack("!Q", 1 << 63) + os.urandom(4),
        "len_2_64_1": b"\x82\xff" + struct.pack("!Q", (1 << 64) - 1) + os.urandom(4),
        "too_big": ws_frame(2, b"", length=5 * 1000 * 1000),
    }
    for name, frame in cases.items():
        s = open_sio(port)
        try:
            s.sendall(frame)
        except (BrokenPipeError, ConnectionResetError):
            pass
        results[name] = close_code(s)
    # The bystander is still served: a ping from us gets a pong.
    bystander.sendall(ws_frame(9, b"still-there"))
    op, data = ws_read(bystander)
    while op == 1:  # skip Engine.IO pings
        op, data = ws_read(bystander)
    out(codes=results, bystander=(op == 10 and data == b"still-there"))


def cmd_fragments(port):
    """100 000 one-byte continuations: refused, not buffered forever."""
    s = open_sio(port)
    s.sendall(ws_frame(1, b"4", fin=False))
    code = None
    try:
        chunk = b"".join(ws_frame(0, b"x", fin=False) for _ in range(1000))
        for _ in range(100):
            s.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    code = close_code(s)
    out(code=code)


def cmd_perip(port, n):
    socks, refused = [], 0
    for _ in range(n):
        s = connect(port)
        s.sendall(b"GET /ws/socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        d = s.recv(200)
        if d.startswith(b"HTTP/1.1 503"):
            refused += 1
        socks.append(s)
    out(opened=n, refused=refused)


def cmd_stall(port, token, seconds):
    """An authenticated socket with a small receive buffer that never reads:
    the server must drop it once its backlog passes the output cap. It prints
    its sid so the test can watch the server side; it never drains what is
    queued (through a 4 KB window that would take minutes)."""
    s = open_sio(port, token, rcvbuf=4096)
    out(ready=True, sid=s.sio_sid)
    time.sleep(float(seconds))
    s.close()


def cmd_reader(port, token, seconds):
    """A well-behaved socket: reads and counts "big" events."""
    s = open_sio(port, token)
    out(ready=True)
    s.settimeout(0.5)
    end = time.time() + float(seconds)
    count = 0
    while time.time() < end:
        try:
            op, data = ws_read(s)
        except socket.timeout:
            continue
        if op is None:
            break
        if op == 1 and data == b"2":
            s.sendall(ws_frame(1, b"3"))
        elif op == 1 and data.startswith(b'42["big"'):
            count += 1
    out(received=count)


def cmd_noattach(port):
    """Announces one binary attachment and never sends it."""
    s = open_sio(port)
    t0 = time.time()
    s.sendall(ws_frame(1, b'451-["x",{"_placeholder":true,"num":0}]'))
    s.settimeout(10)
    while True:
        op, data = ws_read(s)
        if op is None or op == 8:
            break
    out(closed_after=round(time.time() - t0, 2))


def cmd_noack(port, token, seconds):
    """An authenticated socket that answers pings but never acks a call."""
    s = open_sio(port, token)
    out(ready=True, sid=s.sio_sid)
    s.settimeout(0.5)
    end = time.time() + float(seconds)
    while time.time() < end:
        try:
            op, data = ws_read(s)
        except socket.timeout:
            continue
        if op is None:
            break
        if op == 1 and data == b"2":
            s.sendall(ws_frame(1, b"3"))
        elif op == 1:
            out(got=data.decode(errors="replace"))


def main():
    cmd, port = sys.argv[1], int(sys.argv[2])
    args = sys.argv[3:]
    if cmd == "silent":
        cmd_silent(port, int(args[0]), float(args[1]))
    elif cmd == "headers":
        cmd_headers(port)
    elif cmd == "badpackets":
        cmd_badpackets(port)
    elif cmd == "fragments":
        cmd_fragments(port)
    elif cmd == "perip":
        cmd_perip(port, int(args[0]))
    elif cmd == "noattach":
        cmd_noattach(port)
    elif cmd == "noack":
        cmd_noack(port, args[0], args[1])
    elif cmd == "reader":
        cmd_reader(port, args[0], args[1])
    elif cmd == "stall":
        cmd_stall(port, args[0], args[1])
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
