#!/usr/bin/python3
"""sio_client.py - python-socketio's synchronous client against the gateway.

Debian's python3-socketio (5.7.2) with python3-requests and python3-websocket.

  sio_client.py --url http://127.0.0.1:PORT [--token JWT]
                [--transports websocket|polling] [--path ws/socket.io]
                [--lifetime-ms 30000]

Commands (stdin JSON lines), as for sio-client.js:
  {"cmd":"emit","event":"e","args":[...],"ack":true,"timeout":5000,"tag":"t"}
      args may hold {"$bin":"<base64>"} for bytes
  {"cmd":"state"}  {"cmd":"disconnect"}  {"cmd":"exit"}
EOF on stdin disconnects and exits 0.

Output (JSON lines with "ms"): {"t":"connect","id","transport"}
{"t":"event","event","args"} {"t":"ack","tag","args"} {"t":"ack_error",...}
{"t":"disconnect"} {"t":"connect_error","message"} {"t":"exit","code"}
"""

import base64
import json
import os
import sys
import threading
import time

import socketio

T0 = time.monotonic()
LOCK = threading.Lock()


def out(obj):
    obj = dict(obj)
    obj["ms"] = int((time.monotonic() - T0) * 1000)
    with LOCK:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def to_wire(v):
    if isinstance(v, list):
        return [to_wire(x) for x in v]
    if isinstance(v, dict):
        if list(v.keys()) == ["$bin"] and isinstance(v["$bin"], str):
            return base64.b64decode(v["$bin"])
        return {k: to_wire(x) for k, x in v.items()}
    return v


def from_wire(v):
    if isinstance(v, (bytes, bytearray)):
        return {"$bin": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, (list, tuple)):
        return [from_wire(x) for x in v]
    if isinstance(v, dict):
        return {k: from_wire(x) for k, x in v.items()}
    return v


def parse_args(argv):
    opt = {
        "url": os.environ.get("TIDINGS_URL"),
        "token": None,
        "transports": "websocket",
        "path": "ws/socket.io",
        "lifetime-ms": "30000",
    }
    i = 0
    while i < len(argv):
        key = argv[i]
        if not key.startswith("--") or i + 1 >= len(argv):
            raise SystemExit("usage: sio_client.py --url URL [--token T] ...")
        opt[key[2:]] = argv[i + 1]
        i += 2
    return opt


def main():
    opt = parse_args(sys.argv[1:])
    sio = socketio.Client(
        reconnection=False, reconnection_delay=1, reconnection_delay_max=5, randomization_factor=0.5
    )

    @sio.event
    def connect():
        out({"t": "connect", "id": sio.get_sid(), "transport": sio.transport()})

    @sio.event
    def connect_error(data):
        out({"t": "connect_error", "message": str(data)})

    @sio.event
    def disconnect():
        out({"t": "disconnect"})

    @sio.on("*")
    def any_event(event, *args):
        out({"t": "event", "event": event, "args": from_wire(list(args))})

    def expire():
        out({"t": "lifetime_expired"})
        os._exit(3)

    timer = threading.Timer(int(opt["lifetime-ms"]) / 1000.0, expire)
    timer.daemon = True
    timer.start()

    auth = {"token": opt["token"]} if opt["token"] is not None else None
    try:
        sio.connect(
            opt["url"],
            auth=auth,
            transports=opt["transports"].split(","),
            socketio_path=opt["path"],
            wait_timeout=5,
        )
    except socketio.exceptions.ConnectionError as e:
        out({"t": "connect_error", "message": str(e)})
        out({"t": "exit", "code": 1})
        os._exit(1)

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError:
            out({"t": "error", "message": "bad command: " + line})
            continue
        if not handle(sio, cmd):
            break
    if sio.connected:
        sio.disconnect()
    out({"t": "exit", "code": 0})
    os._exit(0)


def handle(sio, cmd):
    """Runs one command; returns False to stop."""
    name = cmd.get("cmd")
    if name == "emit":
        args = to_wire(cmd.get("args") or [])
        data = tuple(args) if len(args) != 1 else args[0]
        if not args:
            data = None
        tag = cmd.get("tag")
        if not cmd.get("ack"):
            sio.emit(cmd["event"], data)
            out({"t": "emitted", "tag": tag})
            return True
        got = threading.Event()

        def callback(*reply):
            got.set()
            out({"t": "ack", "tag": tag, "args": from_wire(list(reply))})

        sio.emit(cmd["event"], data, callback=callback)

        def watchdog():
            if not got.wait((cmd.get("timeout") or 5000) / 1000.0):
                out({"t": "ack_error", "tag": tag, "message": "operation has timed out"})

        threading.Thread(target=watchdog, daemon=True).start()
        return True
    if name == "state":
        out({"t": "state", "connected": sio.connected, "id": sio.get_sid(), "transport": sio.transport()})
        return True
    if name == "disconnect":
        sio.disconnect()
        return True
    if name == "exit":
        return False
    out({"t": "error", "message": "unknown command %s" % name})
    return True


if __name__ == "__main__":
    main()
