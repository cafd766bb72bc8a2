// The JavaScript SDK served at /sdk/ from --sdk-root (default clients/js/src):
// the repo's own modules byte for byte with a JavaScript Content-Type, gzip,
// ETag and 304 as for the web root; the same safety rules (no "..", no
// symlink out of the root, nothing of the web root under /sdk/); a missing
// root answers 404 and leaves the web root alone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { startServer, REPO_ROOT, SECRET_CONTENT } from './lib/server.mjs';
import { nodeRequest, rawRequest } from './lib/http.mjs';

const SDK_SRC = path.join(REPO_ROOT, 'clients', 'js', 'src');
let srv;
let tmp;

before(async () => {
  // A root of its own beside a copy of the SDK: a symlink in it that points out.
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'chatd-sdk-root-'));
  const root = path.join(tmp, 'sdk');
  await fsp.cp(SDK_SRC, root, { recursive: true });
  await fsp.writeFile(path.join(tmp, 'secret.js'), SECRET_CONTENT);
  await fsp.symlink(path.join(tmp, 'secret.js'), path.join(root, 'link-out.js'));
  srv = await startServer({ options: { 'sdk-root': root } });
  // The web root's own "sdk" directory is not what /sdk/ serves.
  await fsp.mkdir(path.join(srv.webRoot, 'sdk'));
  await fsp.writeFile(path.join(srv.webRoot, 'sdk', 'only-web.js'), 'export const web = 1;\n');
});

after(async () => {
  if (srv) await srv.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

const request = nodeRequest;

test('GET /sdk/<module> serves clients/js/src as JavaScript, no-cache, with an ETag and 304', async () => {
  for (const rel of ['index.js', 'client.js', 'adapters/browser.js', 'adapters/uniapp.js']) {
    const r = await request(srv, `/sdk/${rel}`);
    assert.equal(r.status, 200, rel);
    assert.equal(r.headers['content-type'], 'text/javascript; charset=utf-8', rel);
    assert.equal(r.headers['cache-control'], 'no-cache', rel);
    assert.deepEqual(r.body, fs.readFileSync(path.join(SDK_SRC, rel)), `${rel} byte for byte`);
    assert.ok(r.headers.etag, rel);
    const again = await request(srv, `/sdk/${rel}`, { headers: { 'If-None-Match': r.headers.etag } });
    assert.equal(again.status, 304, `${rel} revalidated`);
  }
  const head = await request(srv, '/sdk/index.js', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(Number(head.headers['content-length']), fs.statSync(path.join(SDK_SRC, 'index.js')).size);
  assert.equal((await request(srv, '/sdk/index.js', { method: 'POST' })).status, 405);
});

test('gzip for a client that accepts it, as the web root', async () => {
  const r = await request(srv, '/sdk/client.js', { headers: { 'Accept-Encoding': 'gzip' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-encoding'], 'gzip');
  assert.equal(r.headers.vary, 'Accept-Encoding');
  assert.match(r.headers.etag, /-gz"$/);
  assert.deepEqual(zlib.gunzipSync(r.body), fs.readFileSync(path.join(SDK_SRC, 'client.js')));
  assert.ok(r.body.length < fs.statSync(path.join(SDK_SRC, 'client.js')).size / 2, 'compressed');
});

test('nothing outside the SDK root: no "..", no symlink out, not the web root\'s files', async () => {
  for (const p of ['/sdk/../app.js', '/sdk/%2e%2e/app.js', '/sdk/adapters/../../app.js', '/sdk/a\\b.js', '/sdk//index.js']) {
    const { response: res } = await rawRequest(srv.port, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.ok(res.status === 400 || res.status === 404, `${p} answered ${res.status}`);
    assert.ok(!res.body.toString().includes('chatd test app'), `${p} leaked the web root`);
  }
  const out = await request(srv, '/sdk/link-out.js');
  assert.equal(out.status, 404, 'a symlink pointing out of the root');
  assert.ok(!out.body.toString().includes(SECRET_CONTENT.trim()));
  assert.equal((await request(srv, '/sdk/only-web.js')).status, 404, 'the web root is not looked at under /sdk/');
  assert.equal((await request(srv, '/sdk/index.html')).status, 404);
  assert.equal((await request(srv, '/sdk/')).status, 404, 'no index');
  // The web root still answers its own files beside it.
  assert.equal((await request(srv, '/app.js')).status, 200);
});

test('a missing --sdk-root: /sdk/ is 404 (and said at start), the web root still served', async () => {
  const s = await startServer({ options: { 'sdk-root': path.join(tmp, 'no-such-dir') } });
  try {
    assert.equal((await request(s, '/sdk/index.js')).status, 404);
    assert.equal((await request(s, '/app.js')).status, 200);
    assert.match(s.stderr(), /SDK root \(--sdk-root\) .*no-such-dir does not exist/);
  } finally {
    await s.stop();
  }
});
