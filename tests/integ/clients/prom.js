#!/usr/bin/env node
'use strict';
// prom.js - Prometheus text exposition (stdin) to JSON lines, for q.js:
//   {"t":"type","name","type"}  {"t":"help","name","help"}
//   {"t":"sample","name","labels":{...},"value"}
//   {"t":"bad","line"} for a line that is neither a comment nor a sample.

const fs = require('fs');

const text = fs.readFileSync(0, 'utf8');
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

for (const line of text.split('\n')) {
  if (!line.trim()) continue;
  let m;
  if ((m = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line))) {
    out({ t: 'type', name: m[1], type: m[2] });
  } else if ((m = /^#\s*HELP\s+(\S+)\s*(.*)$/.exec(line))) {
    out({ t: 'help', name: m[1], help: m[2] });
  } else if (line.startsWith('#')) {
    continue;
  } else if ((m = SAMPLE.exec(line))) {
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(LABEL)) labels[l[1]] = l[2];
    out({ t: 'sample', name: m[1], labels, value: Number(m[4]) });
  } else {
    out({ t: 'bad', line });
  }
}
