#!/usr/bin/python3
"""pysio_peer.py - the benchmark's Python reference peer: the Socket.IO layer
of Open WebUI, reduced to the benchmark's scenario contract.

The server is configured exactly as Open WebUI configures python-socketio
(backend/open_webui/socket/main.py, see /work/shared/openwebui-protocol.md
section 1) with WEBSOCKET_MANAGER=redis and ENABLE_WEBSOCKET_SUPPORT=true:

  AsyncServer(cors_allowed_origins='*', async_mode='asgi',
              transports=['websocket'], allow_upgrades=True,
              always_connect=True,
              client_manager=AsyncRedisManager(REDIS_URL,
                                               redis_options={'socket_timeout': None}),
              ping_interval=25, ping_timeout=20,
              logger=False, engineio_logger=False)
  ASGIApp(sio, socketio_path='/ws/socket.io')  -> /ws/socket.io/

served by uvicorn with one worker, default websocket/loop/http settings
(loop "auto" -> uvloop, ws "auto" -> websockets) and log level warning.
Tokens are checked like Open WebUI's decode_token (PyJWT, HS256,
WEBUI_SECRET_KEY). Every emit goes through the AsyncRedisManager, as Open
WebUI's `await sio.emit(event, data, room=...)`: PUBLISH on the `socketio`
channel, then each process's manager listener delivers to its local sockets.

What Open WebUI also does and this peer does not: the user row lookup in the
database and the session pool HSET on connect/user-join, channel rooms on
user-join, token revocation checks. The peer measures the real-time layer.

Contract (shared with sio-peer.js and Tidings' gateway):
  ws://HOST:PORT/ws/socket.io/?EIO=4&transport=websocket
  CONNECT auth {token}: valid -> room user:{id}; else anonymous (always_connect)
  event user-join {auth:{token}} -> room user:{id}, returns {id, name: id}
  ADMIN_PORT (same process and event loop, second uvicorn server):
    POST /api/v1/emit, Authorization: Bearer $TIDINGS_API_KEY,
      {"event", "to": {"user"}|{"room"}|{"sid"}, "data", "update_db", "id"}
      -> await sio.emit(event, data, room=...); 202 {"id"}, 401, 400, 405, 413
    GET /healthz -> 200 once the manager is subscribed to Redis (503 before)

Environment: PORT, ADMIN_PORT, REDIS_URL (redis://127.0.0.1:6379/0),
WEBUI_SECRET_KEY, TIDINGS_API_KEY, HOST (127.0.0.1). Logs to stderr;
SIGTERM/SIGINT stop both servers and exit 0 (forced after 5 s).

  PORT=8201 ADMIN_PORT=8202 REDIS_URL=redis://127.0.0.1:6390 \
  WEBUI_SECRET_KEY=s TIDINGS_API_KEY=k /usr/bin/python3 tests/bench/peers/pysio_peer.py

Debian 12 packages: python3-socketio 5.7.2, python3-engineio 4.3.4,
python3-uvicorn 0.17.6, python3-websockets 10.4, python3-uvloop 0.17,
python3-redis 4.3.4 (redis.asyncio), python3-jwt 2.6.
"""

import asyncio
import hmac
import inspect
import json
import logging
import os
import secrets
import signal
import sys

import jwt
import socketio
import uvicorn

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8080"))
ADMIN_PORT = int(os.environ.get("ADMIN_PORT", "8081"))
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = os.environ.get("WEBUI_SECRET_KEY", "")
API_KEY = os.environ.get("TIDINGS_API_KEY", "")
MAX_BODY = 8 * 1024 * 1024
# Socket.IO's own event names; sio-peer.js refuses them as socket.io does.
RESERVED = {"connect", "connect_error", "disconnect", "disconnecting",
            "newListener", "removeListener"}

log = logging.getLogger("pysio-peer")

sio = socketio.AsyncServer(
    cors_allowed_origins="*",
    async_mode="asgi",
    transports=["websocket"],
    allow_upgrades=True,
    always_connect=True,
    client_manager=socketio.AsyncRedisManager(
        REDIS_URL, redis_options={"socket_timeout": None}),
    ping_interval=25,
    ping_timeout=20,
    logger=False,
    engineio_logger=False,
)
sio_app = socketio.ASGIApp(sio, socketio_path="/ws/socket.io")


def decode_token(token):
    """Open WebUI's decode_token: PyJWT HS256, None on any failure."""
    if not SECRET:
        return None  # as sio-peer.js: no secret, no valid token
    try:
        return jwt.decode(token, SECRET, algorithms=["HS256"])
    except Exception:
        return None


async def enter_room(sid, room):
    # python-socketio 5.7: a plain method; later versions: a coroutine.
    r = sio.enter_room(sid, room)
    if inspect.isawaitable(r):
        await r


@sio.event
async def connect(sid, environ, auth):
    if isinstance(auth, dict) and "token" in auth:
        data = decode_token(auth["token"])
        if data is not None and "id" in data:
            await enter_room(sid, f"user:{data['id']}")


@sio.on("user-join")
async def user_join(sid, data):
    auth = data.get("auth") if isinstance(data, dict) else None
    if not isinstance(auth, dict) or "token" not in auth:
        return None
    claims = decode_token(auth["token"])
    if claims is None or "id" not in claims:
        return None
    await enter_room(sid, f"user:{claims['id']}")
    return {"id": claims["id"], "name": claims["id"]}


# ---- producer API (second uvicorn server, same event loop) ----

def _nonempty_str(v):
    return isinstance(v, str) and v != ""


def _target(to):
    if not isinstance(to, dict) or len(to) != 1:
        return None, "to must have exactly one of user, room, sid"
    (k, v), = to.items()
    if k not in ("user", "room", "sid"):
        return None, "to must have exactly one of user, room, sid"
    if not _nonempty_str(v):
        return None, f"to.{k} must be a non-empty string"
    return (f"user:{v}" if k == "user" else v), None


async def _respond(send, code, obj, close=False):
    body = json.dumps(obj, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _ready():
    pubsub = getattr(sio.manager, "pubsub", None)
    return bool(pubsub is not None and pubsub.subscribed)


async def _emit(body):
    try:
        msg = json.loads(body)
    except ValueError:
        return 400, {"error": "body is not JSON"}
    if not isinstance(msg, dict):
        return 400, {"error": "body must be an object"}
    event = msg.get("event")
    if not _nonempty_str(event):
        return 400, {"error": "event must be a non-empty string"}
    if event in RESERVED:
        return 400, {"error": "event name is reserved"}
    room, err = _target(msg.get("to"))
    if err:
        return 400, {"error": err}
    if "update_db" in msg and not isinstance(msg["update_db"], bool):
        return 400, {"error": "update_db must be a boolean"}
    if "id" in msg and not _nonempty_str(msg["id"]):
        return 400, {"error": "id must be a non-empty string"}
    ident = msg.get("id") or "emit-" + secrets.token_urlsafe(16)
    data = msg.get("data", {})
    # As Open WebUI's event emitter: through the AsyncRedisManager (PUBLISH).
    await sio.emit(event, data, room=room)
    return 202, {"id": ident}


async def admin_app(scope, receive, send):
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/healthz":
        if method not in ("GET", "HEAD"):
            return await _respond(send, 405, {"error": "method not allowed"})
        ok = _ready()
        return await _respond(send, 200 if ok else 503, {"ok": ok})
    if path != "/api/v1/emit":
        return await _respond(send, 404, {"error": "not found"})
    if method != "POST":
        return await _respond(send, 405, {"error": "method not allowed"})
    headers = dict(scope["headers"])
    authz = headers.get(b"authorization", b"")
    if not (API_KEY and authz.startswith(b"Bearer ")
            and hmac.compare_digest(authz[7:], API_KEY.encode())):
        return await _respond(send, 401, {"error": "bad or missing API key"})
    try:
        declared = int(headers.get(b"content-length", b"0"))
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        return await _respond(send, 413, {"error": "body too large"}, close=True)
    body, more = b"", True
    while more:
        m = await receive()
        if m["type"] == "http.disconnect":
            return None
        body += m.get("body", b"")
        more = m.get("more_body", False)
        if len(body) > MAX_BODY:
            return await _respond(send, 413, {"error": "body too large"}, close=True)
    code, obj = await _emit(body)
    return await _respond(send, code, obj)


async def serve():
    servers = [
        uvicorn.Server(uvicorn.Config(sio_app, host=HOST, port=PORT, workers=1,
                                      log_level="warning")),
        # The load generator keeps its connections: a longer keep-alive than
        # uvicorn's 5 s default (this port is ours, not Open WebUI's).
        uvicorn.Server(uvicorn.Config(admin_app, host=HOST, port=ADMIN_PORT,
                                      log_level="warning", access_log=False,
                                      lifespan="off", timeout_keep_alive=75)),
    ]
    loop = asyncio.get_running_loop()

    def force():
        for s in servers:
            s.force_exit = True

    def on_signal(sig):
        log.warning("%s: stopping", sig.name)
        if any(s.should_exit for s in servers):
            force()
        for s in servers:
            s.should_exit = True
        loop.call_later(5, force)

    # One handler for both servers (each would otherwise replace the other's).
    for s in servers:
        s.install_signal_handlers = lambda: None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    # python-socketio starts the manager's Redis listener on the first
    # connection; start it now so an emit right after start-up is delivered
    # and /healthz can report the subscription. Steady state is unchanged.
    sio.manager_initialized = True
    sio.manager.initialize()

    log.warning("socket.io on %s:%d/ws/socket.io/, admin on %s:%d, redis %s",
                HOST, PORT, HOST, ADMIN_PORT, REDIS_URL)
    await asyncio.gather(*(s.serve() for s in servers))


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format=f"pysio-peer[{os.getpid()}]: %(levelname)s %(name)s: %(message)s")
    if not SECRET:
        log.warning("WEBUI_SECRET_KEY is empty; every token is refused")
    if not API_KEY:
        log.warning("TIDINGS_API_KEY is empty; every emit is refused")
    # As uvicorn.run(): install the loop policy ("auto" -> uvloop) first.
    uvicorn.Config(sio_app, loop="auto").setup_event_loop()
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
