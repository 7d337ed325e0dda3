#!/usr/bin/env node
'use strict';
// sio-client.js - socket.io-client configured the way Open WebUI's front end
// configures it (src/routes/+layout.svelte): path /ws/socket.io, transports
// ['websocket'] or ['polling','websocket'], auth {token}, reconnection on
// with delay 1000, max 5000, randomization 0.5, library defaults otherwise.
//
//   sio-client.js --url http://127.0.0.1:PORT [--token JWT] [--transports websocket]
//                 [--path /ws/socket.io] [--nsp /] [--reconnection 0|1]
//                 [--user-join] [--lifetime-ms 30000]
//                 [--probe-delay-ms N] [--poll-delay-ms N --poll-delay-from K]
//
// The delay options (polling,websocket only; see transports.js) pin the order
// of the upgrade's steps, e.g. --probe-delay-ms 300: the CONNECT completes
// over polling and the probe ends while an idle long-poll GET is held.
//
// Commands, one JSON object per stdin line:
//   {"cmd":"emit","event":"e","args":[...],"ack":true,"timeout":5000,"tag":"t1"}
//       args may hold {"$bin":"<base64>"} for Buffers; with ack the reply is
//       printed as {"t":"ack","tag","args"} or {"t":"ack_error","tag","message"}
//   {"cmd":"state"}       -> {"t":"state","connected","id","transport"}
//   {"cmd":"disconnect"}  {"cmd":"connect"}  {"cmd":"exit"}
// EOF on stdin disconnects and exits 0.
//
// Output, one JSON object per line (every line has "ms" since start):
//   {"t":"connect","id","transport"}  {"t":"disconnect","reason"}
//   {"t":"connect_error","message"}   {"t":"event","event","args","ackRequested"}
//   {"t":"upgrade","transport"}       {"t":"reconnect_attempt","n"}  {"t":"exit","code"}

const { io } = require('socket.io-client');
const { fromOptions } = require('./transports');
const { out, toWire, fromWire, parseArgs, commands, lifetime, finish } = require('./common');

const opt = parseArgs(process.argv.slice(2), {
  url: process.env.TIDINGS_URL,
  path: '/ws/socket.io',
  transports: 'websocket',
  nsp: '/',
  reconnection: '1',
  'lifetime-ms': '30000',
});
if (!opt.url) throw new Error('--url is required');

const token = typeof opt.token === 'string' ? opt.token : undefined;
const url = opt.nsp === '/' ? opt.url : opt.url + opt.nsp;
const transports = fromOptions(opt) || opt.transports.split(',');
const socket = io(url, {
  reconnection: opt.reconnection !== '0',
  reconnectionDelay: 1000,
  reconnectionDelayMax: 5000,
  randomizationFactor: 0.5,
  path: opt.path,
  transports,
  auth: opt['auth-json'] ? JSON.parse(opt['auth-json']) : { token },
});

function transportName() {
  const e = socket.io.engine;
  return e && e.transport ? e.transport.name : null;
}

socket.io.on('open', () => {
  const engine = socket.io.engine;
  engine.on('upgrade', (t) => out({ t: 'upgrade', transport: t.name }));
});
socket.io.on('reconnect_attempt', (n) => out({ t: 'reconnect_attempt', n }));

socket.on('connect', () => {
  out({ t: 'connect', id: socket.id, transport: transportName(), recovered: socket.recovered });
  if (opt['user-join']) socket.emit('user-join', { auth: { token } });
});
socket.on('disconnect', (reason) => out({ t: 'disconnect', reason }));
socket.on('connect_error', (err) => out({ t: 'connect_error', message: String(err && err.message) }));

socket.onAny((event, ...args) => {
  let ack = null;
  if (args.length && typeof args[args.length - 1] === 'function') ack = args.pop();
  out({ t: 'event', event, args: fromWire(args), ackRequested: !!ack });
  if (ack) ack({ acked: true, event });
});

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'emit': {
      const args = toWire(cmd.args || []);
      if (!cmd.ack) {
        socket.emit(cmd.event, ...args);
        out({ t: 'emitted', tag: cmd.tag || null });
        return;
      }
      try {
        const reply = await socket.timeout(cmd.timeout || 5000).emitWithAck(cmd.event, ...args);
        // emitWithAck resolves with the first argument only; keep it as a list.
        out({ t: 'ack', tag: cmd.tag || null, args: fromWire([reply]) });
      } catch (e) {
        out({ t: 'ack_error', tag: cmd.tag || null, message: String(e && e.message) });
      }
      return;
    }
    case 'state':
      out({ t: 'state', connected: socket.connected, id: socket.id || null, transport: transportName() });
      return;
    case 'disconnect':
      socket.disconnect();
      return;
    case 'connect':
      socket.connect();
      return;
    case 'exit':
      socket.disconnect();
      finish(0);
      return;
    default:
      out({ t: 'error', message: `unknown command ${cmd.cmd}` });
  }
}

lifetime(Number(opt['lifetime-ms']), () => socket.disconnect());
commands(handle, () => {
  socket.disconnect();
  finish(0);
});
