'use strict';
// resp.js - a minimal Redis (RESP2) client for the integration tests: one
// TCP connection to 127.0.0.1, commands as arrays of strings or Buffers,
// replies in order. Bulk strings come back as Buffers so binary attachment
// bytes survive untouched. No dependency beyond node's `net`.

const net = require('net');

class RespError extends Error {}

class Redis {
  constructor(port, host = '127.0.0.1') {
    this.sock = net.createConnection({ port, host });
    this.sock.setNoDelay(true);
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    this.failure = null;
    this.ready = new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
    this.sock.on('data', (d) => this.onData(d));
    this.sock.on('error', (e) => this.fail(e));
    this.sock.on('close', () => this.fail(new Error('redis connection closed')));
  }

  fail(err) {
    this.failure = this.failure || err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  // Sends one command; resolves with its reply. Commands are written in call
  // order on one connection, so Redis applies them in that order.
  call(...args) {
    if (this.failure) return Promise.reject(this.failure);
    const parts = [Buffer.from(`*${args.length}\r\n`)];
    for (const a of args) {
      const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
      parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(Buffer.concat(parts));
    });
  }

  onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const r = parse(this.buf, 0);
      if (!r) return;
      this.buf = this.buf.subarray(r.end);
      const w = this.waiting.shift();
      if (!w) continue;
      if (r.value instanceof RespError) w.reject(r.value);
      else w.resolve(r.value);
    }
  }

  close() {
    this.sock.end();
  }
}

// Parses one reply at buf[off]; returns {value, end} or null when incomplete.
function parse(buf, off) {
  const nl = buf.indexOf('\r\n', off);
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[off]);
  const line = buf.toString('utf8', off + 1, nl);
  const next = nl + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RespError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.subarray(next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const out = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, at);
        if (!r) return null;
        out.push(r.value);
        at = r.end;
      }
      return { value: out, end: at };
    }
    default:
      throw new Error(`bad RESP type byte ${buf[off]}`);
  }
}

// Turns an XRANGE/XREAD field list into {fields: {k: utf8}, b64: {k: base64}}.
// Fields whose names start with "att" (binary attachments) also get base64.
function entryFields(list) {
  const fields = {};
  const b64 = {};
  for (let i = 0; i + 1 < list.length; i += 2) {
    const k = list[i].toString();
    const v = list[i + 1];
    fields[k] = v.toString('utf8');
    if (k.startsWith('att')) b64[k] = v.toString('base64');
  }
  return { fields, b64 };
}

module.exports = { Redis, RespError, entryFields };
