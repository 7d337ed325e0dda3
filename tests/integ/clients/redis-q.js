#!/usr/bin/env node
'use strict';
// redis-q.js - Redis queries the shell cannot do safely with redis-cli
// (binary values, field lists), printed as JSON lines.
//
//   redis-q.js PORT ingress [PREFIX]     every entry of PREFIX:ingress:* streams:
//                                        {"stream","id","fields":{...},"b64":{att0:...}}
//   redis-q.js PORT stream KEY           every entry of one stream, same shape
//   redis-q.js PORT hgetall KEY          {"field": "value", ...} (one line)

const { Redis, entryFields } = require('./resp');

async function streamEntries(r, key) {
  const out = [];
  const rows = (await r.call('XRANGE', key, '-', '+')) || [];
  for (const [id, list] of rows) {
    const { fields, b64 } = entryFields(list || []);
    out.push({ stream: key, id: id.toString(), fields, b64 });
  }
  return out;
}

async function scanKeys(r, pattern) {
  const keys = [];
  let cursor = '0';
  do {
    const [next, batch] = await r.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next.toString();
    for (const k of batch) keys.push(k.toString());
  } while (cursor !== '0');
  return keys.sort();
}

async function main() {
  const [port, cmd, arg] = process.argv.slice(2);
  const r = new Redis(Number(port));
  await r.ready;
  if (cmd === 'ingress') {
    const prefix = arg || 'tidings';
    for (const key of await scanKeys(r, `${prefix}:ingress:*`)) {
      if ((await r.call('TYPE', key)) !== 'stream') continue;
      for (const e of await streamEntries(r, key)) console.log(JSON.stringify(e));
    }
  } else if (cmd === 'stream') {
    for (const e of await streamEntries(r, arg)) console.log(JSON.stringify(e));
  } else if (cmd === 'hgetall') {
    const list = (await r.call('HGETALL', arg)) || [];
    const h = {};
    for (let i = 0; i + 1 < list.length; i += 2) h[list[i].toString()] = list[i + 1].toString();
    console.log(JSON.stringify(h));
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
  r.close();
}

const timer = setTimeout(() => {
  console.error('redis-q: timed out');
  process.exit(2);
}, 5000);
timer.unref();
main().catch((e) => {
  console.error(`redis-q: ${e.message}`);
  process.exit(1);
});
