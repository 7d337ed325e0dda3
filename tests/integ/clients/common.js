'use strict';
// common.js - what every Node test client shares: JSON-line output, the
// stdin command loop, binary values in JSON, argv parsing, a hard lifetime.
//
// Binary values travel in JSON as {"$bin": "<base64>"} both ways.

const readline = require('readline');

const t0 = Date.now();

function out(obj) {
  process.stdout.write(`${JSON.stringify({ ...obj, ms: Date.now() - t0 })}\n`);
}

function toWire(v) {
  if (Array.isArray(v)) return v.map(toWire);
  if (v && typeof v === 'object') {
    if (typeof v.$bin === 'string' && Object.keys(v).length === 1) return Buffer.from(v.$bin, 'base64');
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = toWire(x);
    return o;
  }
  return v;
}

function fromWire(v) {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return { $bin: Buffer.from(v).toString('base64') };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(new Uint8Array(v)).toString('base64') };
  if (Array.isArray(v)) return v.map(fromWire);
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = fromWire(x);
    return o;
  }
  return v;
}

// Options: --name value pairs and bare --flags (value true).
function parseArgs(argv, defaults) {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) o[key] = argv[++i];
    else o[key] = true;
  }
  return o;
}

// Calls handler(cmd) for each JSON line on stdin and onEnd() at EOF.
function commands(handler, onEnd) {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      out({ t: 'error', message: `bad command: ${line}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(cmd))
      .catch((e) => out({ t: 'error', message: String(e && e.message ? e.message : e) }));
  });
  rl.on('close', onEnd);
}

// The process ends by itself after ms, whatever happens.
function lifetime(ms, onExpire) {
  const t = setTimeout(() => {
    out({ t: 'lifetime_expired' });
    if (onExpire) onExpire();
    process.exit(3);
  }, ms);
  t.unref();
}

function finish(code) {
  out({ t: 'exit', code });
  // Let stdout drain before leaving.
  process.stdout.write('', () => process.exit(code));
}

module.exports = { out, toWire, fromWire, parseArgs, commands, lifetime, finish };
