#!/usr/bin/env node
'use strict';
// q.js - evaluate a JavaScript expression over JSON-line files, for tests.
//
//   q.js 'EXPR' FILE...       prints the value (strings raw, else JSON)
//   q.js --test 'EXPR' FILE...  exit 0 when the value is truthy, 1 otherwise
//
// In EXPR, L is the array of every parsed line of the files (lines that are
// not JSON are skipped), and ev(name) the args of the "event" lines of that
// event name. "-" reads stdin.

const fs = require('fs');

let argv = process.argv.slice(2);
let test = false;
if (argv[0] === '--test') {
  test = true;
  argv = argv.slice(1);
}
const [expr, ...files] = argv;
const L = [];
for (const f of files) {
  let text = '';
  try {
    text = fs.readFileSync(f === '-' ? 0 : f, 'utf8');
  } catch (e) {
    continue;
  }
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      L.push(JSON.parse(line));
    } catch (e) {
      /* not JSON: skip */
    }
  }
}
const ev = (name) => L.filter((l) => l.t === 'event' && l.event === name).map((l) => l.args);
let v;
try {
  v = new Function('L', 'ev', `return (${expr});`)(L, ev);
} catch (e) {
  console.error(`q.js: ${e.message}`);
  process.exit(2);
}
if (test) process.exit(v ? 0 : 1);
if (v === undefined || v === null) process.exit(0);
process.stdout.write(typeof v === 'string' ? `${v}\n` : `${JSON.stringify(v)}\n`);
