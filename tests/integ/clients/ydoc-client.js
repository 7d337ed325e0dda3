#!/usr/bin/env node
'use strict';
// ydoc-client.js - a collaborative note editor the way Open WebUI's front end
// is one (src/lib/components/common/RichTextInput/Collaboration.ts, catalogue
// section 6): socket.io-client configured as sio-client.js, a Y.Doc whose
// XmlFragment 'prosemirror' holds paragraphs of Y.XmlText (what y-prosemirror
// keeps for a TipTap note), and the ydoc:* events.
//
//   ydoc-client.js --url URL --token JWT --doc note:ID [--name N] [--binary]
//                  [--initial TEXT] [--lifetime-ms 60000]
//   ydoc-client.js merge FILE...      content of Y.mergeUpdates of every update
//                                     the clients whose outputs are FILE... sent
//   ydoc-client.js push PORT KEY MS SEED
//                                     updates of another Y.Doc appended to the
//                                     list KEY straight in Redis for MS ms, one
//                                     at a time (a second writer racing the
//                                     compactions), each printed as "sent"
//
// As the front end does: on connect, join (document_id, user_id, user_name,
// user_color) and announce awareness; on the state answer, seed the document
// with --initial when the server's state is empty and this socket is the only
// session (sessions.length === 1), send the whole local document when the
// server's state is empty but ours is not, else apply it; apply every update
// from another socket; send each local change as {document_id, user_id,
// socket_id, update, data: {content: {md, html, json}}} - update as a number
// array, or with --binary as a Uint8Array (a Socket.IO binary attachment).
//
// Commands (stdin, JSON lines): {"cmd":"edit","n":N,"seed":S,"gap_ms":G}
// (N random edits, G ms apart), {"cmd":"insert","text":T} (one paragraph),
// {"cmd":"dump"}, {"cmd":"join"}, {"cmd":"leave"}, {"cmd":"state"} (asks the
// server for the state), {"cmd":"emit","event":E,"args":[...]},
// {"cmd":"disconnect"}, {"cmd":"connect"}, {"cmd":"exit"}.
//
// Output (JSON lines, "ms" since start): connect, disconnect, state {len,
// empty, sessions, seeded}, sent {b64, wall, md}, got {user_id, socket_id,
// binary, len}, event {event, args} for the other ydoc events, dump {text,
// side, sv}, edited {n}, inserted.

const Y = require('yjs');
const { io } = require('socket.io-client');
const { out, toWire, parseArgs, commands, lifetime, finish } = require('./common');

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['a', 'bc', 'héllo ', ' ', '😀', '中文', 'x😀y', 'word ', '\n', 'zz'];

function texts(frag) {
  const acc = [];
  for (const c of frag.toArray()) {
    if (c instanceof Y.XmlElement)
      for (const t of c.toArray()) if (t instanceof Y.XmlText) acc.push(t);
  }
  return acc;
}

function paragraph(text) {
  const p = new Y.XmlElement('paragraph');
  const t = new Y.XmlText();
  t.insert(0, text);
  p.insert(0, [t]);
  return p;
}

// One random edit, in one transaction (one update).
function edit(doc, rnd) {
  const frag = doc.getXmlFragment('prosemirror');
  const int = (n) => Math.floor(rnd() * n);
  const word = () => WORDS[int(WORDS.length)];
  doc.transact(() => {
    const ts = texts(frag);
    const r = rnd();
    if (ts.length === 0 || r < 0.15) {
      frag.insert(int(frag.length + 1), [paragraph(word())]);
    } else if (r < 0.7) {
      const t = ts[int(ts.length)];
      t.insert(int(t.length + 1), word(), rnd() < 0.2 ? { bold: true } : undefined);
    } else if (r < 0.9) {
      const t = ts[int(ts.length)];
      if (t.length > 0) {
        const at = int(t.length);
        t.delete(at, Math.min(1 + int(3), t.length - at));
      }
    } else if (r < 0.95 && frag.length > 2) {
      frag.delete(int(frag.length), 1);
    } else {
      const t = ts[int(ts.length)];
      if (t.length > 1) t.format(0, 1 + int(t.length - 1), { italic: true });
    }
  });
}

function dumpOf(doc) {
  const sv = [...Y.decodeStateVector(Y.encodeStateVector(doc)).entries()].sort((a, b) => a[0] - b[0]);
  return {
    text: doc.getXmlFragment('prosemirror').toString(),
    side: doc.getText('side').toString(),
    sv: JSON.stringify(sv),
  };
}

function content(doc) {
  return { md: texts(doc.getXmlFragment('prosemirror')).map((t) => t.toString()).join('\n'), html: '', json: '' };
}

// ---------------------------------------------------------------- merge, push

function mergeMode(files) {
  const fs = require('fs');
  const ups = [];
  for (const f of files)
    for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      let l;
      try {
        l = JSON.parse(line);
      } catch (e) {
        continue;
      }
      if (l.t === 'sent') ups.push(new Uint8Array(Buffer.from(l.b64, 'base64')));
    }
  const doc = new Y.Doc();
  Y.applyUpdate(doc, Y.mergeUpdates(ups));
  out({ t: 'merged', n: ups.length, ...dumpOf(doc) });
}

async function pushMode(port, key, ms, seed) {
  const { Redis } = require('./resp');
  const r = new Redis(Number(port));
  await r.ready;
  const doc = new Y.Doc();
  const side = doc.getText('side');
  const rnd = mulberry32(Number(seed));
  let last = null;
  doc.on('update', (u) => {
    out({ t: 'sent', b64: Buffer.from(u).toString('base64'), wall: Date.now() });
    last = r.call('RPUSH', key, Buffer.from(u));
  });
  // One append at a time, as fast as Redis answers, for the whole time.
  const end = Date.now() + Number(ms);
  let n = 0;
  while (Date.now() < end) {
    side.insert(Math.floor(rnd() * (side.length + 1)), `s${n++}`);
    await last;
  }
  out({ t: 'pushed', n });
  finish(0);
}

// ---------------------------------------------------------------- editor

function editor() {
  const opt = parseArgs(process.argv.slice(2), { path: '/ws/socket.io', 'lifetime-ms': '60000', name: 'User' });
  const docId = opt.doc;
  const doc = new Y.Doc();
  const color = '#4ECDC4';
  let joined = false;
  const socket = io(opt.url, {
    reconnection: false,
    path: opt.path,
    transports: ['websocket'],
    auth: { token: opt.token },
  });

  const join = () => {
    socket.emit('ydoc:document:join', { document_id: docId, user_id: 'forged-user', user_name: opt.name, user_color: color });
    const aw = Buffer.from(JSON.stringify({ [doc.clientID]: { user: { name: opt.name, color, id: socket.id } } }));
    socket.emit('ydoc:awareness:update', { document_id: docId, user_id: socket.id, update: Array.from(aw) });
    joined = true;
  };

  const send = (update) => {
    const c = content(doc);
    out({ t: 'sent', b64: Buffer.from(update).toString('base64'), wall: Date.now(), md: c.md });
    socket.emit('ydoc:document:update', {
      document_id: docId,
      user_id: 'forged-user',
      socket_id: 'forged-sid',
      update: opt.binary ? update : Array.from(update),
      data: { content: c },
    });
  };

  doc.on('update', (update, origin) => {
    if (origin !== 'server' && socket.connected && joined) send(update);
  });

  socket.on('connect', () => {
    out({ t: 'connect', id: socket.id });
    join();
  });
  socket.on('disconnect', (reason) => {
    joined = false;
    out({ t: 'disconnect', reason });
  });
  socket.on('connect_error', (err) => out({ t: 'connect_error', message: String(err && err.message) }));

  socket.on('ydoc:document:state', (d) => {
    if (d.document_id !== docId) return;
    const state = new Uint8Array(d.state);
    const empty = state.length === 2 && state[0] === 0 && state[1] === 0;
    const frag = doc.getXmlFragment('prosemirror');
    let seeded = false;
    if (empty) {
      if (frag.length === 0) {
        if (opt.initial && (d.sessions || []).length === 1) {
          doc.transact(() => frag.insert(0, [paragraph(opt.initial)]));
          seeded = true;
        }
      } else {
        // The whole local document, as one binary update (no data: no save).
        const u = Y.encodeStateAsUpdate(doc);
        out({ t: 'sent', b64: Buffer.from(u).toString('base64'), wall: Date.now() });
        socket.emit('ydoc:document:update', { document_id: docId, user_id: 'forged-user', socket_id: socket.id, update: u });
      }
    } else {
      Y.applyUpdate(doc, state, 'server');
    }
    out({ t: 'state', len: state.length, empty, sessions: d.sessions, seeded, ...dumpOf(doc) });
  });

  socket.on('ydoc:document:update', (d) => {
    if (d.document_id !== docId || d.socket_id === socket.id) return;
    const u = new Uint8Array(d.update);
    Y.applyUpdate(doc, u, 'server');
    out({ t: 'got', user_id: d.user_id, socket_id: d.socket_id, binary: !Array.isArray(d.update), len: u.length });
  });

  for (const ev of ['ydoc:user:joined', 'ydoc:user:left', 'ydoc:awareness:update', 'error']) {
    socket.on(ev, (...args) => {
      const a = args.map((x) =>
        x && x.update ? { ...x, update: Buffer.from(new Uint8Array(x.update)).toString('utf8') } : x,
      );
      out({ t: 'event', event: ev, args: a });
    });
  }

  async function handle(cmd) {
    switch (cmd.cmd) {
      case 'edit': {
        const rnd = mulberry32(cmd.seed || 1);
        for (let i = 0; i < (cmd.n || 1); i++) {
          edit(doc, rnd);
          if (cmd.gap_ms) await new Promise((r) => setTimeout(r, cmd.gap_ms));
        }
        out({ t: 'edited', n: cmd.n || 1 });
        return;
      }
      case 'insert': {
        const frag = doc.getXmlFragment('prosemirror');
        doc.transact(() => frag.insert(frag.length, [paragraph(cmd.text)]));
        out({ t: 'inserted' });
        return;
      }
      case 'dump':
        out({ t: 'dump', ...dumpOf(doc) });
        return;
      case 'join':
        join();
        return;
      case 'leave':
        socket.emit('ydoc:document:leave', { document_id: docId, user_id: 'forged-user' });
        joined = false;
        out({ t: 'left' });
        return;
      case 'state':
        socket.emit('ydoc:document:state', { document_id: docId });
        return;
      case 'emit':
        socket.emit(cmd.event, ...toWire(cmd.args || []));
        out({ t: 'emitted', event: cmd.event });
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
}

const argv = process.argv.slice(2);
if (argv[0] === 'merge') mergeMode(argv.slice(1));
else if (argv[0] === 'push') pushMode(argv[1], argv[2], argv[3], argv[4]).catch((e) => {
  out({ t: 'error', message: String(e && e.message) });
  finish(1);
});
else editor();
