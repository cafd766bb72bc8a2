// Static files, gzip-compressed for clients that accept it: which requests
// get the gzip variant (Accept-Encoding with q-values and "*"), its headers
// (Content-Encoding, Content-Length, its own ETag, Vary), HEAD and 304 per
// variant, the bytes identical to the file once decompressed, a file that
// changes, and what is never compressed (images, unknown types, tiny files).
// Driven with Node's http client, which does not decompress by itself.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { startServer, PNG_1x1 } from './lib/server.mjs';
import { nodeRequest, RawConn } from './lib/http.mjs';

const BIG_JS = Array.from({ length: 400 }, (_, i) => `export const value${i} = { id: ${i}, name: "item ${i}" };\n`).join('');
const FILES = {
  'gz/app.js': BIG_JS,
  'gz/page.html': `<!doctype html><title>gzip</title>\n${'<p>Some text of the page, repeated.</p>\n'.repeat(60)}`,
  'gz/icon.svg': `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">${'<circle cx="32" cy="32" r="20"/>'.repeat(20)}</svg>\n`,
  'gz/tiny.css': 'body { color: #123; }\n', // under 256 bytes: not worth it
  // compressible bytes, but an image type (already compressed as a rule) and an unknown type
  'gz/photo.png': Buffer.concat([PNG_1x1, Buffer.alloc(8192, 'a')]),
  'gz/blob.bin': Buffer.alloc(8192, 'b'),
};

let srv;
before(async () => {
  srv = await startServer();
  for (const [rel, content] of Object.entries(FILES)) {
    await fsp.mkdir(path.dirname(path.join(srv.webRoot, rel)), { recursive: true });
    await fsp.writeFile(path.join(srv.webRoot, rel), content);
  }
});
after(() => srv && srv.stop());

/** One request with Node's http client; the body as received (still compressed). */
const request = (urlPath, opts) => nodeRequest(srv, urlPath, opts);

const file = (rel) => Buffer.from(FILES[rel]);

function assertGzip(r, rel) {
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-encoding'], 'gzip', `${rel} is gzip-compressed`);
  assert.equal(Number(r.headers['content-length']), r.body.length, 'Content-Length is the compressed length');
  assert.ok(r.body.length < file(rel).length, 'smaller than the file');
  assert.ok(zlib.gunzipSync(r.body).equals(file(rel)), 'decompresses to the file, byte for byte');
  assert.match(r.headers.etag, /-gz"$/, 'the gzip variant has its own ETag');
  assert.match(r.headers.vary || '', /accept-encoding/i);
}

function assertIdentity(r, rel, { vary = true } = {}) {
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-encoding'], undefined, `${rel} is not compressed`);
  assert.ok(r.body.equals(file(rel)), 'the body is the file');
  assert.equal(Number(r.headers['content-length']), file(rel).length);
  assert.doesNotMatch(r.headers.etag, /-gz"$/);
  if (vary) assert.match(r.headers.vary || '', /accept-encoding/i, 'Vary on every answer of a compressible file');
  else assert.doesNotMatch(r.headers.vary || '', /accept-encoding/i);
}

describe('gzip variant', () => {
  test('without Accept-Encoding: the file as it is, with Vary', async () => {
    for (const rel of ['gz/app.js', 'gz/page.html', 'gz/icon.svg']) assertIdentity(await request(`/${rel}`), rel);
  });

  test('Accept-Encoding: gzip: compressed, and the decompressed bytes are the file', async () => {
    for (const rel of ['gz/app.js', 'gz/page.html', 'gz/icon.svg']) {
      const r = await request(`/${rel}`, { headers: { 'Accept-Encoding': 'gzip' } });
      assertGzip(r, rel);
      const again = await request(`/${rel}`, { headers: { 'Accept-Encoding': 'gzip, deflate, br' } });
      assert.ok(again.body.equals(r.body), 'the second answer (from the cache) is the same');
      assert.equal(again.headers.etag, r.headers.etag);
    }
  });

  const cases = [
    ['gzip, deflate, br, zstd', true],
    ['br;q=1.0, gzip;q=0.8, *;q=0.1', true],
    ['x-gzip', true],
    ['GZip;Q=0.001', true],
    ['*', true],
    ['br, *;q=0.5', true],
    ['gzip;q=0', false],
    ['gzip;q=0.000, br', false],
    ['GZIP; q=0.0', false],
    ['*, gzip;q=0', false],
    ['*;q=0', false],
    ['identity', false],
    ['deflate, br', false],
    ['', false],
    ['gzip;q=2', false], // not a qvalue: taken as a refusal
    ['gzipx, gzi', false],
  ];
  for (const [ae, gz] of cases) {
    test(`Accept-Encoding: ${JSON.stringify(ae)} -> ${gz ? 'gzip' : 'identity'}`, async () => {
      const r = await request('/gz/app.js', { headers: { 'Accept-Encoding': ae } });
      if (gz) assertGzip(r, 'gz/app.js');
      else assertIdentity(r, 'gz/app.js');
    });
  }

  test('images, unknown types and tiny files are never compressed', async () => {
    const ae = { 'Accept-Encoding': 'gzip' };
    assertGzip(await request('/gz/app.js', { headers: ae }), 'gz/app.js');
    assertIdentity(await request('/gz/photo.png', { headers: ae }), 'gz/photo.png', { vary: false });
    assertIdentity(await request('/gz/blob.bin', { headers: ae }), 'gz/blob.bin', { vary: false });
    assertIdentity(await request('/gz/tiny.css', { headers: ae }), 'gz/tiny.css', { vary: false });
  });

  test('concurrent first requests for a new file all get the same correct bytes', async () => {
    const rel = 'gz/fresh.js';
    FILES[rel] = BIG_JS.replaceAll('item', 'fresh');
    await fsp.writeFile(path.join(srv.webRoot, rel), FILES[rel]);
    const rs = await Promise.all(Array.from({ length: 12 }, () => request(`/${rel}`, { headers: { 'Accept-Encoding': 'gzip' } })));
    for (const r of rs) assertGzip(r, rel);
  });

  test('a file that changes is compressed again (new bytes, new ETag)', async () => {
    const rel = 'gz/change.js';
    FILES[rel] = BIG_JS;
    const p = path.join(srv.webRoot, rel);
    await fsp.writeFile(p, FILES[rel]);
    await fsp.utimes(p, new Date(2020, 0, 1), new Date(2020, 0, 1));
    const r1 = await request(`/${rel}`, { headers: { 'Accept-Encoding': 'gzip' } });
    assertGzip(r1, rel);
    FILES[rel] = BIG_JS.replaceAll('name', 'title') + '// changed\n';
    await fsp.writeFile(p, FILES[rel]);
    const r2 = await request(`/${rel}`, { headers: { 'Accept-Encoding': 'gzip' } });
    assertGzip(r2, rel);
    assert.notEqual(r2.headers.etag, r1.headers.etag);
  });
});

describe('HEAD and 304 per variant', () => {
  test('HEAD has the GET headers of its variant and no body', async () => {
    const get = await request('/gz/app.js', { headers: { 'Accept-Encoding': 'gzip' } });
    const c = await RawConn.connect(srv.port);
    try {
      await c.write('HEAD /gz/app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n');
      const h = await c.readResponse({ head: true });
      assert.equal(h.status, 200);
      assert.equal(h.headers['content-encoding'], 'gzip');
      assert.equal(Number(h.headers['content-length']), get.body.length, 'the compressed length');
      assert.equal(h.headers.etag, get.headers.etag);
      assert.match(h.headers.vary || '', /accept-encoding/i);
      await c.write('HEAD /gz/page.html HTTP/1.1\r\nHost: x\r\n\r\n');
      const hi = await c.readResponse({ head: true });
      assert.equal(hi.headers['content-encoding'], undefined);
      assert.equal(Number(hi.headers['content-length']), file('gz/page.html').length);
      assert.match(hi.headers.vary || '', /accept-encoding/i);
      // Had a HEAD sent a body, it would now be in front of this answer.
      await c.write('GET /gz/tiny.css HTTP/1.1\r\nHost: x\r\n\r\n');
      const g = await c.readResponse();
      assert.equal(g.status, 200);
      assert.ok(g.body.equals(file('gz/tiny.css')));
    } finally {
      c.destroy();
    }
  });

  test('If-None-Match with the gzip ETag: 304 for gzip, 200 identity for a client without gzip', async () => {
    const gz = await request('/gz/page.html', { headers: { 'Accept-Encoding': 'gzip' } });
    const id = await request('/gz/page.html');
    assert.notEqual(gz.headers.etag, id.headers.etag);

    const r304 = await request('/gz/page.html', { headers: { 'Accept-Encoding': 'gzip', 'If-None-Match': gz.headers.etag } });
    assert.equal(r304.status, 304);
    assert.equal(r304.body.length, 0);
    assert.equal(r304.headers.etag, gz.headers.etag);
    assert.match(r304.headers.vary || '', /accept-encoding/i);

    const headGz = await request('/gz/page.html', { method: 'HEAD', headers: { 'Accept-Encoding': 'gzip', 'If-None-Match': gz.headers.etag } });
    assert.equal(headGz.status, 304);

    // the identity variant is another representation: its ETag does not match the gzip one
    const other = await request('/gz/page.html', { headers: { 'If-None-Match': gz.headers.etag } });
    assertIdentity(other, 'gz/page.html');
    const otherGz = await request('/gz/page.html', { headers: { 'Accept-Encoding': 'gzip', 'If-None-Match': id.headers.etag } });
    assertGzip(otherGz, 'gz/page.html');

    const id304 = await request('/gz/page.html', { headers: { 'If-None-Match': id.headers.etag } });
    assert.equal(id304.status, 304);
    assert.equal(id304.headers.etag, id.headers.etag);
  });

  test('If-Modified-Since gives 304 for either variant', async () => {
    const gz = await request('/gz/icon.svg', { headers: { 'Accept-Encoding': 'gzip' } });
    const ims = gz.headers['last-modified'];
    const r = await request('/gz/icon.svg', { headers: { 'Accept-Encoding': 'gzip', 'If-Modified-Since': ims } });
    assert.equal(r.status, 304);
    assert.match(r.headers.etag, /-gz"$/);
    const ri = await request('/gz/icon.svg', { headers: { 'If-Modified-Since': ims } });
    assert.equal(ri.status, 304);
    assert.doesNotMatch(ri.headers.etag, /-gz"$/);
  });
});

describe('Cache-Control', () => {
  test('documents and scripts are revalidated; images are fresh for a while (the favicon is not fetched twice)', async () => {
    assert.equal((await request('/gz/app.js')).headers['cache-control'], 'no-cache');
    assert.equal((await request('/gz/page.html')).headers['cache-control'], 'no-cache');
    assert.equal((await request('/gz/icon.svg')).headers['cache-control'], 'max-age=600');
    assert.equal((await request('/gz/photo.png')).headers['cache-control'], 'max-age=600');
  });
});
