#!/usr/bin/env node
'use strict';
// raw-ws.js - a hand-made WebSocket client over node's `net`, for what the
// real clients cannot do: send chosen Origin headers, or complete the
// Engine.IO handshake and then never answer a ping.
//
//   raw-ws.js --port P [--path '/ws/socket.io/?EIO=4&transport=websocket']
//             [--origin ORIGIN] [--host HOST]
//             [--mode handshake|silent|answer] [--sio-auth TOKEN|--sio-anon]
//             [--lifetime-ms 10000]
//
// handshake: print the HTTP status of the upgrade and exit 0.
// silent:    read frames, never send an Engine.IO pong ("3"), never answer
//            WebSocket pings either; report when the server closes.
// answer:    like silent but answers every "2" with "3".
// --sio-auth sends the Socket.IO CONNECT 40{"token":TOKEN} after the
// Engine.IO open packet (--sio-anon sends a bare "40").
//
// In silent/answer mode the client also ends at EOF on stdin.
//
// Output: {"t":"status","code","reason"} {"t":"open","sid","pingInterval","pingTimeout"}
// {"t":"frame","op","text"} {"t":"sio_connect","sid"} {"t":"ping","n"}
// {"t":"close","by":"close-frame|end|error","code","sinceOpenMs","sinceLastPingMs"}

const net = require('net');
const crypto = require('crypto');
const { out, parseArgs, finish } = require('./common');

const opt = parseArgs(process.argv.slice(2), {
  path: '/ws/socket.io/?EIO=4&transport=websocket',
  mode: 'handshake',
  'lifetime-ms': '10000',
});
const port = Number(opt.port);

const key = crypto.randomBytes(16).toString('base64');
const lines = [
  `GET ${opt.path} HTTP/1.1`,
  `Host: ${opt.host || `127.0.0.1:${port}`}`,
  'Upgrade: websocket',
  'Connection: Upgrade',
  `Sec-WebSocket-Key: ${key}`,
  'Sec-WebSocket-Version: 13',
];
if (typeof opt.origin === 'string') lines.push(`Origin: ${opt.origin}`);

let buf = Buffer.alloc(0);
let upgraded = false;
let openAt = 0;
let lastPingAt = 0;
let pings = 0;
let closed = false;

const sock = net.createConnection({ port, host: '127.0.0.1' }, () => {
  sock.write(`${lines.join('\r\n')}\r\n\r\n`);
});

function frame(op, payload) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const mask = crypto.randomBytes(4);
  let head;
  if (data.length < 126) {
    head = Buffer.from([0x80 | op, 0x80 | data.length]);
  } else if (data.length < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | op;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(data.length, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | op;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(data.length), 2);
  }
  const masked = Buffer.from(data);
  for (let i = 0; i < masked.length; i++) masked[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, masked]);
}

function report(by, code) {
  if (closed) return;
  closed = true;
  const now = Date.now();
  out({
    t: 'close',
    by,
    code: code === undefined ? null : code,
    sinceOpenMs: openAt ? now - openAt : null,
    sinceLastPingMs: lastPingAt ? now - lastPingAt : null,
    pings,
  });
  sock.destroy();
  finish(0);
}

function onText(text) {
  out({ t: 'frame', op: 1, text });
  if (text[0] === '0') {
    openAt = Date.now();
    const o = JSON.parse(text.slice(1));
    out({ t: 'open', sid: o.sid, pingInterval: o.pingInterval, pingTimeout: o.pingTimeout, upgrades: o.upgrades });
    if (typeof opt['sio-auth'] === 'string') sock.write(frame(1, `40${JSON.stringify({ token: opt['sio-auth'] })}`));
    else if (opt['sio-anon']) sock.write(frame(1, '40'));
  } else if (text[0] === '2') {
    pings += 1;
    lastPingAt = Date.now();
    out({ t: 'ping', n: pings });
    if (opt.mode === 'answer') sock.write(frame(1, `3${text.slice(1)}`));
  } else if (text.startsWith('40')) {
    const o = JSON.parse(text.slice(2) || '{}');
    out({ t: 'sio_connect', sid: o.sid || null });
  }
}

// Returns false when buf holds no complete frame yet.
function takeFrame() {
  if (buf.length < 2) return false;
  const op = buf[0] & 0x0f;
  let len = buf[1] & 0x7f;
  let at = 2;
  if (len === 126) {
    if (buf.length < 4) return false;
    len = buf.readUInt16BE(2);
    at = 4;
  } else if (len === 127) {
    if (buf.length < 10) return false;
    len = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  if (buf[1] & 0x80) at += 4; // servers do not mask, but skip a key if present
  if (buf.length < at + len) return false;
  const payload = buf.subarray(at, at + len);
  buf = buf.subarray(at + len);
  if (op === 1) onText(payload.toString('utf8'));
  else if (op === 2) out({ t: 'frame', op, b64: payload.toString('base64') });
  else if (op === 8) report('close-frame', payload.length >= 2 ? payload.readUInt16BE(0) : null);
  else out({ t: 'frame', op, len });
  return true;
}

sock.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  if (!upgraded) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = buf.subarray(0, end).toString('latin1');
    buf = buf.subarray(end + 4);
    const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/m.exec(head);
    const code = m ? Number(m[1]) : 0;
    out({ t: 'status', code, reason: m ? m[2] : head.slice(0, 80) });
    if (opt.mode === 'handshake' || code !== 101) {
      sock.destroy();
      closed = true;
      finish(0);
      return;
    }
    upgraded = true;
  }
  while (!closed && takeFrame());
});
function ended(by, why) {
  if (!upgraded && !closed) {
    out({ t: 'status', code: 0, reason: `no response: ${why}` });
    closed = true;
    finish(0);
    return;
  }
  report(by);
}
sock.on('end', () => ended('end', 'connection closed'));
sock.on('error', (e) => ended('error', e.message));
sock.on('close', () => ended('end', 'connection closed'));

// In silent/answer mode, EOF on stdin ends the client (the tests hold stdin
// open through a FIFO while the client should live).
if (opt.mode !== 'handshake') {
  process.stdin.on('end', () => {
    if (!closed) out({ t: 'stdin_eof', pings });
    closed = true;
    sock.destroy();
    finish(0);
  });
  process.stdin.resume();
}

setTimeout(() => {
  out({ t: 'lifetime_expired', pings });
  sock.destroy();
  process.exit(3);
}, Number(opt['lifetime-ms'])).unref();
