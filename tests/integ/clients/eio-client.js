#!/usr/bin/env node
'use strict';
// eio-client.js - a raw engine.io-client socket (no Socket.IO on top).
//
//   eio-client.js --url http://127.0.0.1:PORT [--path /engine.io/]
//                 [--transports websocket|polling,websocket] [--lifetime-ms 20000]
//                 [--probe-delay-ms N] [--poll-delay-ms N --poll-delay-from K]
//                 (delays that pin the steps of an upgrade: see transports.js)
//
// Commands (stdin JSON lines):
//   {"cmd":"send","text":"hello"}      a text message
//   {"cmd":"send","b64":"AAEC..."}     a binary message (Buffer)
//   {"cmd":"state"}  {"cmd":"close"}   {"cmd":"exit"}
// Output: {"t":"open","sid","transport"} {"t":"message","text"} or
// {"t":"message","b64"} {"t":"upgrade","transport"} {"t":"close","reason"}
// {"t":"error","message"} {"t":"state",...} {"t":"exit","code"}

const { Socket } = require('engine.io-client');
const { fromOptions } = require('./transports');
const { out, parseArgs, commands, lifetime, finish } = require('./common');

const opt = parseArgs(process.argv.slice(2), {
  url: process.env.TIDINGS_URL,
  path: '/engine.io/',
  transports: 'websocket',
  'lifetime-ms': '20000',
});

const transports = fromOptions(opt) || opt.transports.split(',');
const socket = new Socket(opt.url, { path: opt.path, transports });

socket.on('open', () => out({ t: 'open', sid: socket.id, transport: socket.transport.name }));
socket.on('upgrade', (t) => out({ t: 'upgrade', transport: t.name }));
socket.on('message', (data) => {
  // engine.io-parser hands an empty message ("4") over as undefined.
  if (data === undefined) out({ t: 'message', text: '' });
  else if (typeof data === 'string') out({ t: 'message', text: data });
  else out({ t: 'message', b64: Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data).toString('base64') });
});
socket.on('close', (reason, desc) => out({ t: 'close', reason, description: desc ? String(desc.message || desc) : null }));
socket.on('error', (e) => out({ t: 'error', message: String(e && e.message ? e.message : e) }));

function handle(cmd) {
  switch (cmd.cmd) {
    case 'send':
      if (typeof cmd.b64 === 'string') socket.send(Buffer.from(cmd.b64, 'base64'));
      else socket.send(cmd.text);
      out({ t: 'sent' });
      return;
    case 'state':
      out({ t: 'state', readyState: socket.readyState, sid: socket.id, transport: socket.transport && socket.transport.name });
      return;
    case 'close':
      socket.close();
      return;
    case 'exit':
      socket.close();
      finish(0);
      return;
    default:
      out({ t: 'error', message: `unknown command ${cmd.cmd}` });
  }
}

lifetime(Number(opt['lifetime-ms']), () => socket.close());
commands(handle, () => {
  socket.close();
  finish(0);
});
