#!/usr/bin/env node
'use strict';
// yjs-gen.js - random Yjs editing sessions for the merge property test
// (tests/integ/45-yjs-merge.t), with the real `yjs` from npm.
//
//   yjs-gen.js gen DIR FROM TO    for each seed in [FROM, TO): several Y.Doc
//                                 clients edit concurrently and sync partially;
//                                 every update any client emits is written to
//                                 DIR/SEED/uN.bin. Prints the merge plan for the
//                                 C driver (`yjs batch`), one command a line, and
//                                 writes DIR/SEED/jobs.json describing it.
//   yjs-gen.js check DIR FROM TO  applies each merge the C driver wrote and
//                                 compares the document with one that applied
//                                 the original updates one by one, and with
//                                 one that applied Y.mergeUpdates of the same
//                                 inputs; state vectors are compared with
//                                 Y.encodeStateVectorFromUpdate. Prints one JSON
//                                 line per failure and a summary line last.
//
// The editing imitates what Open WebUI's clients do: a TipTap/ProseMirror
// note over Y.XmlFragment 'prosemirror' (paragraphs and headings holding
// Y.XmlText with marks as formatting attributes), plus Y.Text with emoji and
// other surrogate pairs (edits may fall between the halves of a pair), Y.Map
// with JSON-like values, binary, bigints, nested types and a subdocument,
// and Y.Array. Some clients publish whole-state snapshots as updates, the
// way a server saves a document, so updates overlap with different struct
// boundaries; partial syncs make clients re-emit what they received.

const fs = require('fs');
const path = require('path');
const Y = require('yjs');

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

// ------------------------------------------------------------------ editing

const WORDS = ['a', 'bc', 'héllo', ' ', '😀', '👍🏽', '𝄞', '中文', 'x😀y', 'e\u0301', '\n', 'zz😀😀'];

// Every fourth session is "lossy": its edits may fall between the halves of
// a surrogate pair. Yjs then replaces both halves with U+FFFD in the editing
// document only, so documents - and the updates they emit - disagree about
// the content of the same clocks (yjs issue #248), and which copy a merge or
// a document keeps depends on order. The check compares lossy sessions with
// every astral character and U+FFFD masked (the lengths still agree).
const isLossy = (seed) => seed % 4 === 3;

function session(seed) {
  const rnd = mulberry32(seed * 2654435761);
  const lossy = isLossy(seed);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (arr) => arr[int(arr.length)];
  const word = () => pick(WORDS) + (rnd() < 0.3 ? pick(WORDS) : '');

  const ndocs = 2 + int(3);
  const docs = [];
  const updates = [];
  const ids = new Set();
  for (let i = 0; i < ndocs; i++) {
    const d = new Y.Doc({ gc: rnd() < 0.8 });
    let id;
    do id = 1 + int(0xfffffffe);
    while (ids.has(id));
    ids.add(id);
    d.clientID = id;
    d.on('update', (u) => updates.push(u));
    docs.push(d);
  }

  function anyValue(depth = 0) {
    switch (int(depth > 1 ? 8 : 11)) {
      case 0: return int(1000) - 500;
      case 1: return rnd() * 1e6;
      case 2: return pick([0.5, -0, 2 ** 40, 2 ** 53 - 1, -(2 ** 31), 1e-300]);
      case 3: return word();
      case 4: return rnd() < 0.5;
      case 5: return null;
      case 6: return BigInt(int(1e9)) * 1000000007n;
      case 7: return pick(['', 'ok', '😀']);
      case 8: return [anyValue(depth + 1), anyValue(depth + 1)];
      case 9: return { k: anyValue(depth + 1), 'ü😀': anyValue(depth + 1) };
      default: return [];
    }
  }

  // Y.Array takes no top-level bigint; a Uint8Array becomes Binary content.
  function listValue() {
    const v = anyValue();
    return typeof v === 'bigint' ? new Uint8Array([int(256), 7]) : v;
  }

  function mapValue(d) {
    const r = int(14);
    if (r < 8) return anyValue();
    if (r === 8) return new Uint8Array([int(256), int(256), 0]);
    if (r === 9) {
      const m = new Y.Map();
      m.set('x', anyValue());
      return m;
    }
    if (r === 10) {
      const a = new Y.Array();
      a.push([listValue(), listValue()]);
      return a;
    }
    if (r === 11) {
      const t = new Y.Text();
      t.insert(0, word());
      return t;
    }
    if (r === 12) return new Y.Doc({ guid: `sub-${seed}-${d.clientID}-${int(1e6)}` });
    return undefined;
  }

  function xmlTexts(node, acc) {
    for (const c of node.toArray()) {
      if (c instanceof Y.XmlText) acc.push(c);
      else if (c instanceof Y.XmlElement) xmlTexts(c, acc);
    }
    return acc;
  }

  function block() {
    const el = new Y.XmlElement(pick(['paragraph', 'paragraph', 'heading', 'blockquote']));
    if (el.nodeName === 'heading') el.setAttribute('level', 1 + int(3));
    const t = new Y.XmlText();
    t.insert(0, word(), rnd() < 0.3 ? { bold: true } : undefined);
    el.insert(0, [t]);
    return el;
  }

  const mark = () => pick([{ bold: true }, { italic: true }, { link: { href: `https://e/${int(9)}` } },
    { bold: null }, { code: true }]);

  // An index into t, moved off the middle of a surrogate pair unless the
  // session is lossy (see session()).
  function at(t, i) {
    if (lossy || i === 0 || i >= t.length) return i;
    const s = t.toDelta().map((op) => (typeof op.insert === 'string' ? op.insert : '\0')).join('');
    const hi = s.charCodeAt(i - 1);
    return hi >= 0xd800 && hi <= 0xdbff ? i + 1 : i;
  }

  function textEdit(t) {
    const len = t.length;
    const r = int(10);
    if (r < 5 || len === 0) t.insert(at(t, int(len + 1)), word(), rnd() < 0.3 ? mark() : undefined);
    else if (r < 8) {
      const i = at(t, int(len));
      if (i < len) t.delete(i, at(t, i + 1 + int(Math.min(5, len - i))) - i);
    } else if (r < 9) {
      const i = at(t, int(len));
      if (i < len) t.format(i, at(t, i + 1 + int(len - i)) - i, mark());
    } else t.insertEmbed(at(t, int(len + 1)), { image: `i${int(9)}.png` });
  }

  function edit(d) {
    const r = int(20);
    if (r < 5) return textEdit(d.getText('text'));
    if (r < 8) {
      const m = d.getMap('map');
      const k = pick(['a', 'b', 'c', 'd', 'é']);
      if (rnd() < 0.15) m.delete(k);
      else m.set(k, mapValue(d));
      return;
    }
    if (r < 11) {
      const a = d.getArray('arr');
      if (a.length > 0 && rnd() < 0.35) {
        const i = int(a.length);
        a.delete(i, 1 + int(Math.min(3, a.length - i)));
      } else if (rnd() < 0.2) {
        const m = new Y.Map();
        m.set('n', anyValue());
        a.insert(int(a.length + 1), [m]);
      } else {
        const vals = [];
        for (let n = 1 + int(4); n > 0; n--) vals.push(listValue());
        a.insert(int(a.length + 1), vals);
      }
      return;
    }
    // The note editor.
    const f = d.getXmlFragment('prosemirror');
    const texts = xmlTexts(f, []);
    const x = int(10);
    if (x < 2 || texts.length === 0) f.insert(int(f.length + 1), [block()]);
    else if (x < 7) textEdit(pick(texts));
    else if (x < 8 && f.length > 0) f.delete(int(f.length), 1);
    else if (x < 9 && f.length > 0) {
      const el = f.get(int(f.length));
      if (el instanceof Y.XmlElement) el.setAttribute(pick(['level', 'align']), `${int(4)}`);
    } else if (rnd() < 0.2) {
      const h = new Y.XmlHook('mention');
      h.set('id', word());
      f.insert(int(f.length + 1), [h]);
    } else {
      const el = block();
      f.insert(int(f.length + 1), [el]);
      el.insert(el.length, [new Y.XmlElement('hardBreak')]);
    }
  }

  const steps = 25 + int(40);
  for (let s = 0; s < steps; s++) {
    const r = rnd();
    if (r < 0.15) {
      // partial sync: b receives what a has that b lacks, and re-emits it
      const a = pick(docs);
      const b = pick(docs);
      if (a !== b) Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)), 'sync');
    } else if (r < 0.2) {
      // a whole-state snapshot, as a server saves one
      updates.push(Y.encodeStateAsUpdate(pick(docs)));
    } else if (r < 0.3) {
      const d = pick(docs);
      d.transact(() => {
        for (let n = 2 + int(4); n > 0; n--) edit(d);
      });
    } else edit(pick(docs));
  }
  return { updates, rnd };
}

// ------------------------------------------------------------------ plan

// The merges asked of the C driver for one seed. Each job lists its inputs
// (original updates "uN", or the output of an earlier job) and the leaves,
// the original updates whose combined effect it must have.
function plan(n, rnd) {
  const int = (k) => Math.floor(rnd() * k);
  const shuffle = (a) => {
    for (let i = a.length - 1; i > 0; i--) {
      const j = int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  };
  const all = [...Array(n).keys()];
  const subset = () => shuffle(all.filter(() => rnd() < 0.5));
  const jobs = [];
  const job = (kind, inputs, leaves) => {
    const id = `m${jobs.length}`;
    jobs.push({ id, kind, inputs, leaves });
    return { id, leaves };
  };
  const orig = (is) => is.map((i) => `u${i}`);

  job('all-shuffled', orig(shuffle(all.slice())), all);
  const sub = subset();
  for (let k = int(4); k > 0 && sub.length > 0; k--) sub.splice(int(sub.length + 1), 0, sub[int(sub.length)]);
  job('subset-dups', orig(sub), sub);
  job('reversed', orig(all.slice().reverse()), all);

  // merges of merges: two overlapping halves, merged again with extras
  const sa = subset();
  const sb = subset();
  const a = job('half-a', orig(sa), sa);
  const b = job('half-b', orig(sb), sb);
  const extra = subset().slice(0, 3);
  job('merge-of-merges', [a.id, ...orig(extra), b.id, a.id], [...a.leaves, ...extra, ...b.leaves]);

  // the server's log compaction: merge, then merge the result with newer updates
  let prev = null;
  let leaves = [];
  let at = 0;
  while (at < n) {
    const take = 1 + int(Math.max(1, n / 3));
    const chunk = all.slice(at, at + take);
    at += take;
    leaves = leaves.concat(chunk);
    prev = job('compaction', [...(prev ? [prev.id] : []), ...orig(chunk)], leaves.slice());
  }
  return jobs;
}

function gen(dir, from, to) {
  const lines = [];
  for (let seed = from; seed < to; seed++) {
    const { updates, rnd } = session(seed);
    const sd = path.join(dir, String(seed));
    fs.mkdirSync(sd, { recursive: true });
    updates.forEach((u, i) => fs.writeFileSync(path.join(sd, `u${i}.bin`), u));
    const jobs = plan(updates.length, rnd);
    fs.writeFileSync(path.join(sd, 'jobs.json'), JSON.stringify({ n: updates.length, jobs }));
    for (const j of jobs) lines.push(`merge ${sd}/${j.id}.bin ${j.inputs.map((x) => `${sd}/${x}.bin`).join(' ')}`);
    lines.push(`sv ${sd}/sv.bin ${sd}/m0.bin`);
    const one = Math.floor(rnd() * updates.length);
    lines.push(`sv ${sd}/sv1.bin ${sd}/u${one}.bin`);
    fs.writeFileSync(path.join(sd, 'sv1.json'), JSON.stringify(one));
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

// ------------------------------------------------------------------ check

// A canonical, comparable picture of a value in the document.
function val(v) {
  if (v instanceof Y.XmlHook) return { hook: v.hookName, e: entries(v) };
  if (v instanceof Y.XmlText) return { xt: delta(v) };
  if (v instanceof Y.XmlElement) {
    const at = v.getAttributes();
    return { el: v.nodeName, at: Object.keys(at).sort().map((k) => [k, val(at[k])]), c: v.toArray().map(val) };
  }
  if (v instanceof Y.XmlFragment) return { xf: v.toArray().map(val) };
  if (v instanceof Y.Text) return { t: delta(v) };
  if (v instanceof Y.Map) return { m: entries(v) };
  if (v instanceof Y.Array) return { a: v.toArray().map(val) };
  if (v instanceof Y.Doc) return { doc: v.guid };
  if (v instanceof Uint8Array) return { bin: Buffer.from(v).toString('hex') };
  if (typeof v === 'bigint') return { big: v.toString() };
  if (v === undefined) return { undef: 1 };
  if (typeof v === 'number') return Object.is(v, -0) ? { negzero: 1 } : v;
  if (Array.isArray(v)) return v.map(val);
  if (v && typeof v === 'object') return Object.keys(v).map((k) => [k, val(v[k])]);
  return v;
}

function entries(m) {
  return [...m.keys()].sort().map((k) => [k, val(m.get(k))]);
}

function delta(t) {
  return t.toDelta().map((op) => ({ i: val(op.insert), a: op.attributes ? val(op.attributes) : null }));
}

function picture(doc) {
  return JSON.stringify({
    text: delta(doc.getText('text')),
    map: entries(doc.getMap('map')),
    arr: doc.getArray('arr').toArray().map(val),
    pm: val(doc.getXmlFragment('prosemirror')),
    sv: Buffer.from(Y.encodeStateVector(doc)).toString('hex'),
  });
}

function applied(updates, lossy) {
  const d = new Y.Doc();
  for (const u of updates) Y.applyUpdate(d, u);
  const p = picture(d);
  return lossy ? p.replace(/[\ud800-\udbff][\udc00-\udfff]/g, '??').replace(/\ufffd/g, '?') : p;
}

// Other orders to apply the updates in: reversed, by index both ways, and
// some seeded shuffles.
function otherOrders(seed, leaves) {
  const rnd = mulberry32(seed ^ 0x5bd1e995);
  const idx = leaves.map((_, i) => i);
  const orders = [leaves.slice().reverse()];
  for (let k = 0; k < 20; k++) {
    for (let i = idx.length - 1; i > 0; i--) {
      const r = Math.floor(rnd() * (i + 1));
      [idx[i], idx[r]] = [idx[r], idx[i]];
    }
    orders.push(idx.map((i) => leaves[i]));
  }
  return orders;
}

// Does a document that applied these updates wait for missing structs?
function pending(updates) {
  const d = new Y.Doc();
  for (const u of updates) Y.applyUpdate(d, u);
  return d.store.pendingStructs !== null || d.store.pendingDs !== null;
}

function check(dir, from, to) {
  const stats = { seeds: 0, jobs: 0, updates: 0, failures: 0, same_bytes: 0, order_dependent: 0, missing_deps: 0, sv: 0 };
  const failed = (seed, job, why, extra) => {
    stats.failures++;
    process.stdout.write(`${JSON.stringify({ seed, job, why, ...extra })}\n`);
  };
  for (let seed = from; seed < to; seed++) {
    const sd = path.join(dir, String(seed));
    const { n, jobs } = JSON.parse(fs.readFileSync(path.join(sd, 'jobs.json')));
    const read = (name) => new Uint8Array(fs.readFileSync(path.join(sd, `${name}.bin`)));
    const lossy = isLossy(seed);
    const orig = [];
    for (let i = 0; i < n; i++) orig.push(read(`u${i}`));
    stats.seeds++;
    stats.updates += n;
    for (const j of jobs) {
      stats.jobs++;
      let c;
      try {
        c = read(j.id);
      } catch (e) {
        failed(seed, j.id, 'no C output', { kind: j.kind });
        continue;
      }
      const inputs = j.inputs.map(read);
      const leaves = j.leaves.map((i) => orig[i]);
      const want = applied(leaves, lossy);
      let got;
      try {
        got = applied([c], lossy);
      } catch (e) {
        failed(seed, j.id, `C merge does not apply: ${e.message}`, { kind: j.kind });
        continue;
      }
      const ym = Y.mergeUpdates(inputs);
      const yjs = applied([ym], lossy);
      if (got !== want || got !== yjs) {
        // Yjs documents themselves can end differently depending on the order
        // updates arrive in (formatting cleanup, pending structs): then the
        // merge must equal the outcome of some order, as Y.mergeUpdates must.
        const outcomes = new Set([want, ...otherOrders(seed, leaves).map((o) => applied(o, lossy))]);
        if (outcomes.has(got)) {
          if (got !== yjs && !outcomes.has(yjs)) failed(seed, j.id, 'Y.mergeUpdates itself matches no order', { kind: j.kind });
          else stats.order_dependent++;
        } else if (got === yjs && pending(leaves)) {
          // With dependencies missing, Yjs integrates one merged update only up
          // to the first struct that waits for one, where separate updates each
          // get as far as they can: Y.mergeUpdates has this effect too. What
          // must hold is that the rest of the session still converges.
          const rest = orig.filter((_, i) => !j.leaves.includes(i));
          const all = applied(orig, lossy);
          if (applied([c, ...rest], lossy) !== all && applied([c, ...rest], lossy) !== applied([ym, ...rest], lossy)) failed(seed, j.id, 'C merge + the other updates != all updates', { kind: j.kind });
          else stats.missing_deps++;
        } else failed(seed, j.id, 'C merge != updates applied one by one, in any order', { kind: j.kind, got, want });
      }
      if (Buffer.compare(Buffer.from(c), Buffer.from(ym)) === 0) stats.same_bytes++;
      else if (process.env.YJS_GEN_BYTES) failed(seed, j.id, 'bytes differ', { kind: j.kind });
    }
    const sv = (file, upd) => {
      const want = Buffer.from(Y.encodeStateVectorFromUpdate(upd)).toString('hex');
      const got = fs.readFileSync(path.join(sd, file)).toString('hex');
      if (got !== want) failed(seed, file, 'state vector != Y.encodeStateVectorFromUpdate', { got, want });
      else stats.sv++;
    };
    sv('sv.bin', read('m0'));
    sv('sv1.bin', orig[JSON.parse(fs.readFileSync(path.join(sd, 'sv1.json')))]);
  }
  process.stdout.write(`${JSON.stringify({ summary: stats })}\n`);
}

module.exports = { session, plan, picture, applied };

if (require.main === module) {
  const [cmd, dir, from, to] = process.argv.slice(2);
  if (cmd === 'gen') gen(dir, +from, +to);
  else if (cmd === 'check') check(dir, +from, +to);
  else {
    process.stderr.write('usage: yjs-gen.js gen|check DIR FROM TO\n');
    process.exit(2);
  }
}
