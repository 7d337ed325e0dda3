#!/usr/bin/env node
'use strict';
// mint-token.js - HS256 JWTs like Open WebUI's (claims id, exp, jti, iat),
// plus the broken ones the tests need.
//
//   mint-token.js --user ID [--exp SECONDS] [--secret S] [--alg HS256|none]
//                 [--no-exp] [--tamper]
//
// --exp is relative to now (negative: already expired; default 3600).
// --secret defaults to $WEBUI_SECRET_KEY. --alg none writes an unsigned
// token; --tamper changes the payload after signing (bad signature).

const crypto = require('crypto');

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

function parseArgs(argv) {
  const o = { exp: 3600, secret: process.env.WEBUI_SECRET_KEY || '', alg: 'HS256' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--user') o.user = argv[++i];
    else if (a === '--exp') o.exp = Number(argv[++i]);
    else if (a === '--secret') o.secret = argv[++i];
    else if (a === '--alg') o.alg = argv[++i];
    else if (a === '--no-exp') o.noExp = true;
    else if (a === '--tamper') o.tamper = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.user) throw new Error('--user is required');
  return o;
}

function mint(o) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { id: o.user };
  if (!o.noExp) claims.exp = now + o.exp;
  claims.jti = crypto.randomUUID();
  claims.iat = now;
  const header = b64url(JSON.stringify({ alg: o.alg, typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const input = `${header}.${payload}`;
  const sig = o.alg === 'none' ? '' : b64url(crypto.createHmac('sha256', o.secret).update(input).digest());
  if (o.tamper) {
    const forged = b64url(JSON.stringify({ ...claims, id: `${o.user}-admin` }));
    return `${header}.${forged}.${sig}`;
  }
  return `${input}.${sig}`;
}

try {
  process.stdout.write(`${mint(parseArgs(process.argv.slice(2)))}\n`);
} catch (e) {
  console.error(`mint-token: ${e.message}`);
  process.exit(2);
}
