#!/usr/bin/env node
'use strict';
// sio-upgrade.js - deliveries across a polling -> websocket upgrade.
//
// socket.io-client with transports ['polling','websocket'] (Open WebUI's
// setting when websockets are not forced). The stock transports are used,
// with two delays added on the client side so that each phase of the upgrade
// really exists on loopback:
//   - the websocket probe opens --probe-delay-ms after the polling handshake,
//     so the Socket.IO CONNECT completes over polling first;
//   - the final "5" (UPGRADE) packet is held back --upgrade-delay-ms after the
//     probe succeeded, so the server sits in its upgrade window meanwhile.
// The client XADDs numbered delivery entries for itself to the gateway's
// delivery stream (one Redis connection, so stream order = send order):
//   phase "polling":  after CONNECT, while the transport is still polling
//   phase "upgrading": when the probe's pong arrived (polling paused)
//   phase "window":    while the UPGRADE packet is held back
//   phase "upgraded":  right after the upgrade
//   phase "after":     a while later, then a trickle until --count
// Entries alternate between `op sid` (this socket) and `op room user:<id>`.
//
//   sio-upgrade.js --url URL --token JWT --user ID --redis-port P --gateway-id gw1
//                  [--prefix tidings] [--count 50] [--probe-delay-ms 300]
//                  [--upgrade-delay-ms 300] [--timeout-ms 15000]
//
// Output: JSON lines; the last is {"t":"result", ok, received, missing,
// outOfOrder, duplicates, phases, transportAtConnect, transportAfterUpgrade}.
// Exit 0 when every entry arrived once and in order after an upgrade.

const { io } = require('socket.io-client');
const { NodeXHR, NodeWebSocket } = require('engine.io-client');
const { Redis } = require('./resp');
const { out, parseArgs, finish } = require('./common');

const opt = parseArgs(process.argv.slice(2), {
  prefix: 'tidings',
  count: '50',
  'probe-delay-ms': '300',
  'upgrade-delay-ms': '300',
  'timeout-ms': '15000',
  path: '/ws/socket.io',
});
const COUNT = Number(opt.count);
const probeDelay = Number(opt['probe-delay-ms']);
const upgradeDelay = Number(opt['upgrade-delay-ms']);
const dlv = `${opt.prefix}:gw:${opt['gateway-id']}:dlv`;
const phases = {};
let hooks = {};

class SlowProbeWebSocket extends NodeWebSocket {
  doOpen() {
    setTimeout(() => super.doOpen(), probeDelay);
  }

  write(packets) {
    if (packets.some((p) => p.type === 'upgrade')) {
      this.writable = false;
      if (hooks.window) hooks.window();
      setTimeout(() => super.write(packets), upgradeDelay);
      return;
    }
    super.write(packets);
  }
}

const redis = new Redis(Number(opt['redis-port']));
let seq = 0;
function sendBatch(phase, n) {
  const sends = [];
  for (let i = 0; i < n && seq < COUNT; i++) {
    seq += 1;
    phases[phase] = (phases[phase] || 0) + 1;
    const pkt = `2["seq",{"n":${seq},"phase":"${phase}"}]`;
    const target = seq % 2 ? ['op', 'sid', 'target', socket.id] : ['op', 'room', 'target', `user:${opt.user}`];
    sends.push(redis.call('XADD', dlv, '*', ...target, 'pkt', pkt));
  }
  return Promise.all(sends).catch((e) => out({ t: 'error', message: `XADD: ${e.message}` }));
}

const socket = io(opt.url, {
  reconnection: false,
  path: opt.path,
  transports: [NodeXHR, SlowProbeWebSocket],
  auth: { token: opt.token },
});

const got = [];
let transportAtConnect = null;
let transportAfterUpgrade = null;
let done = false;

function result(reason) {
  if (done) return;
  done = true;
  const seen = new Set();
  let outOfOrder = 0;
  let duplicates = 0;
  let last = 0;
  for (const n of got) {
    if (seen.has(n)) duplicates++;
    if (n < last) outOfOrder++;
    seen.add(n);
    last = Math.max(last, n);
  }
  const missing = [];
  for (let n = 1; n <= COUNT; n++) if (!seen.has(n)) missing.push(n);
  const upgraded = transportAfterUpgrade === 'websocket';
  const ok = missing.length === 0 && outOfOrder === 0 && duplicates === 0 && upgraded && seq === COUNT;
  out({
    t: 'result',
    ok,
    reason,
    sent: seq,
    received: got.length,
    missing,
    outOfOrder,
    duplicates,
    phases,
    transportAtConnect,
    transportAfterUpgrade,
    order: got,
  });
  socket.disconnect();
  redis.close();
  finish(ok ? 0 : 1);
}

socket.on('connect', () => {
  transportAtConnect = socket.io.engine.transport.name;
  out({ t: 'connect', id: socket.id, transport: transportAtConnect });
  const engine = socket.io.engine;
  hooks.window = () => sendBatch('window', 10);
  engine.on('upgrading', () => sendBatch('upgrading', 10));
  engine.on('upgrade', (t) => {
    out({ t: 'upgrade', transport: t.name });
    sendBatch('upgraded', 10).then(() => {
      setTimeout(() => {
        transportAfterUpgrade = socket.io.engine.transport.name;
        out({ t: 'transport', name: transportAfterUpgrade });
        sendBatch('after', 5);
        const trickle = setInterval(() => {
          if (seq >= COUNT) return clearInterval(trickle);
          sendBatch('after', 1);
        }, 10);
      }, 200);
    });
  });
  engine.on('upgradeError', (e) => out({ t: 'upgrade_error', message: String(e && e.message) }));
  sendBatch('polling', 10);
});
socket.on('connect_error', (err) => {
  out({ t: 'connect_error', message: String(err && err.message) });
  result('connect_error');
});
socket.on('disconnect', (reason) => {
  out({ t: 'disconnect', reason });
  result(`disconnect: ${reason}`);
});
socket.on('seq', (m) => {
  got.push(m.n);
  if (got.length >= COUNT && transportAfterUpgrade) setTimeout(() => result('complete'), 200);
});

setTimeout(() => result('timeout'), Number(opt['timeout-ms']));
redis.ready.catch((e) => {
  out({ t: 'error', message: `redis: ${e.message}` });
  result('redis');
});
