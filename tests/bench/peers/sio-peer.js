#!/usr/bin/env node
'use strict';
// sio-peer.js - the benchmark's Node reference peer: a minimal server that
// implements the benchmark's scenario contract with socket.io 4.8 and
// @socket.io/redis-streams-adapter, deployed the way socket.io documents a
// multi-node deployment on Redis streams (one Redis client handed to
// createAdapter; the adapter duplicates it for XREAD and PUB/SUB; every
// io.to(room).emit() is XADDed to the `socket.io` stream and read back by
// every node, so N processes on one Redis behave as one server).
//
// Server options follow Open WebUI's python-socketio settings (see
// /work/shared/openwebui-protocol.md §1): path /ws/socket.io, websocket-only
// transport, CORS origin *, pingInterval 25 s, pingTimeout 20 s,
// maxHttpBufferSize 1e6. Like Open WebUI's always_connect=True, the CONNECT
// is always accepted; a valid token only adds the room.
//
// Contract (shared with pysio_peer.py and Tidings' gateway):
//   ws://HOST:PORT/ws/socket.io/?EIO=4&transport=websocket
//   CONNECT auth {token}: HS256 JWT (WEBUI_SECRET_KEY; claims id, exp) valid
//     -> joins room user:{id}; invalid/missing -> stays connected anonymously
//   event user-join {auth:{token}} -> joins user:{id}, ack {id, name: id}
//   ADMIN_PORT: POST /api/v1/emit (Authorization: Bearer $TIDINGS_API_KEY)
//     {"event", "to": {"user"}|{"room"}|{"sid"}, "data", "update_db", "id"}
//     -> io.to(room).emit(event, data); 202 {"id"}, 401, 400, 405, 413
//   ADMIN_PORT: GET /healthz -> 200 once Redis and both listeners are up
//
// Environment: PORT, ADMIN_PORT, REDIS_URL (redis://127.0.0.1:6379),
// WEBUI_SECRET_KEY, TIDINGS_API_KEY, HOST (127.0.0.1). Logs to stderr;
// SIGTERM/SIGINT close everything and exit 0.
//
//   PORT=8101 ADMIN_PORT=8102 REDIS_URL=redis://127.0.0.1:6390 \
//   WEBUI_SECRET_KEY=s TIDINGS_API_KEY=k node tests/bench/peers/sio-peer.js

const http = require('http');
const crypto = require('crypto');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-streams-adapter');
const { createClient } = require('redis');

const env = process.env;
const HOST = env.HOST || '127.0.0.1';
const PORT = Number(env.PORT || 8080);
const ADMIN_PORT = Number(env.ADMIN_PORT || 8081);
const REDIS_URL = env.REDIS_URL || 'redis://127.0.0.1:6379';
const SECRET = env.WEBUI_SECRET_KEY || '';
const API_KEY = env.TIDINGS_API_KEY || '';
const MAX_BODY = 8 * 1024 * 1024;
// socket.io refuses to emit these names (they are its own events).
const RESERVED = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']);

function log(...a) {
  process.stderr.write(`sio-peer[${process.pid}]: ${a.join(' ')}\n`);
}

// HS256 JWT as Open WebUI's decode_token (PyJWT) accepts it: signature over
// header.payload with the secret, alg HS256, exp (when present) in the future.
function verifyToken(token) {
  if (typeof token !== 'string' || !SECRET) return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    if (!header || header.alg !== 'HS256') return null;
    const want = crypto.createHmac('sha256', SECRET).update(`${parts[0]}.${parts[1]}`).digest();
    const got = Buffer.from(parts[2], 'base64url');
    if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return null;
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (!claims || typeof claims !== 'object') return null;
    if (claims.exp !== undefined && !(typeof claims.exp === 'number' && claims.exp > Date.now() / 1000)) return null;
    if (typeof claims.id !== 'string' || claims.id === '') return null;
    return claims;
  } catch (e) {
    return null;
  }
}

function send(res, code, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function isStr(v) {
  return typeof v === 'string' && v !== '';
}

// Returns [room, error]; room names as Open WebUI uses them.
function target(to) {
  if (!to || typeof to !== 'object' || Array.isArray(to)) return [null, 'to must be an object'];
  const keys = Object.keys(to);
  if (keys.length !== 1) return [null, 'to must have exactly one of user, room, sid'];
  const v = to[keys[0]];
  if (!isStr(v)) return [null, `to.${keys[0]} must be a non-empty string`];
  if (keys[0] === 'user') return [`user:${v}`, null];
  if (keys[0] === 'room' || keys[0] === 'sid') return [v, null];
  return [null, 'to must have exactly one of user, room, sid'];
}

function authorized(req) {
  const h = req.headers.authorization || '';
  if (!API_KEY || !h.startsWith('Bearer ')) return false;
  const got = Buffer.from(h.slice(7));
  const want = Buffer.from(API_KEY);
  return got.length === want.length && crypto.timingSafeEqual(got, want);
}

async function main() {
  if (!SECRET) log('warning: WEBUI_SECRET_KEY is empty; every token is refused');
  if (!API_KEY) log('warning: TIDINGS_API_KEY is empty; every emit is refused');

  const redisClient = createClient({ url: REDIS_URL });
  redisClient.on('error', (e) => log(`redis: ${e.message}`));
  await redisClient.connect();

  const httpServer = http.createServer((req, res) => send(res, 404, { error: 'not found' }));
  const io = new Server(httpServer, {
    path: '/ws/socket.io',
    transports: ['websocket'],
    cors: { origin: '*' },
    pingInterval: 25000,
    pingTimeout: 20000,
    maxHttpBufferSize: 1e6,
    adapter: createAdapter(redisClient),
  });

  io.on('connection', (socket) => {
    const auth = socket.handshake.auth;
    const claims = verifyToken(auth && auth.token);
    if (claims) socket.join(`user:${claims.id}`);

    socket.on('user-join', (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
      const data = args[0];
      const c = verifyToken(data && data.auth && data.auth.token);
      if (!c) {
        if (ack) ack(); // as python-socketio for a handler returning None
        return;
      }
      socket.join(`user:${c.id}`);
      if (ack) ack({ id: c.id, name: c.id });
    });
  });

  function emit(req, res, body) {
    let msg;
    try {
      msg = JSON.parse(body.toString('utf8'));
    } catch (e) {
      return send(res, 400, { error: 'body is not JSON' });
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return send(res, 400, { error: 'body must be an object' });
    if (!isStr(msg.event)) return send(res, 400, { error: 'event must be a non-empty string' });
    if (RESERVED.has(msg.event)) return send(res, 400, { error: 'event name is reserved' });
    const [room, err] = target(msg.to);
    if (err) return send(res, 400, { error: err });
    if (msg.update_db !== undefined && typeof msg.update_db !== 'boolean') return send(res, 400, { error: 'update_db must be a boolean' });
    if (msg.id !== undefined && !isStr(msg.id)) return send(res, 400, { error: 'id must be a non-empty string' });
    const id = msg.id || `emit-${crypto.randomBytes(16).toString('base64url')}`;
    const data = msg.data === undefined ? {} : msg.data;
    try {
      io.to(room).emit(msg.event, data);
    } catch (e) {
      return send(res, 400, { error: String(e.message) });
    }
    return send(res, 202, { id });
  }

  const admin = http.createServer((req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/healthz') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'method not allowed' });
      return send(res, redisClient.isReady ? 200 : 503, { ok: redisClient.isReady });
    }
    if (path !== '/api/v1/emit') return send(res, 404, { error: 'not found' });
    if (req.method !== 'POST') return send(res, 405, { error: 'method not allowed' });
    if (!authorized(req)) {
      req.resume();
      return send(res, 401, { error: 'bad or missing API key' });
    }
    const declared = Number(req.headers['content-length'] || 0);
    if (declared > MAX_BODY) {
      res.setHeader('Connection', 'close');
      send(res, 413, { error: 'body too large' });
      req.destroy();
      return undefined;
    }
    const chunks = [];
    let size = 0;
    let over = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) over = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (over) return send(res, 413, { error: 'body too large' });
      return emit(req, res, Buffer.concat(chunks));
    });
    return undefined;
  });
  // The load generator keeps its connections; do not drop them after Node's 5 s default.
  admin.keepAliveTimeout = 75000;
  admin.headersTimeout = 76000;

  const listen = (srv, port) =>
    new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, HOST, () => {
        srv.removeListener('error', reject);
        resolve();
      });
    });
  await listen(httpServer, PORT);
  await listen(admin, ADMIN_PORT);
  log(`socket.io on ${HOST}:${PORT}/ws/socket.io/, admin on ${HOST}:${ADMIN_PORT}, redis ${REDIS_URL}`);

  let stopping = false;
  const stop = (sig) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping`);
    setTimeout(() => process.exit(0), 3000).unref();
    admin.close();
    admin.closeAllConnections();
    io.close(() => {
      redisClient
        .close()
        .catch(() => {})
        .finally(() => process.exit(0));
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e) => {
  log(`fatal: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
