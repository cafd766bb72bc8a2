// Static files from --web-root: content, Content-Type, index.html, ETag,
// Last-Modified, 304, HEAD, and refused path traversal.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, WEB_FIXTURES, SECRET_CONTENT } from './lib/server.mjs';
import { RawConn, rawRequest } from './lib/http.mjs';

const srv = await startServer();
after(() => srv.stop());

const get = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
const fetchPath = (p, init = {}) => fetch(srv.url + p, { ...init, signal: AbortSignal.timeout(3000) });

describe('files and Content-Type', () => {
  const cases = [
    ['/a.txt', 'a.txt', /^text\/plain\b/],
    ['/style.css', 'style.css', /^text\/css\b/],
    ['/app.js', 'app.js', /^(application|text)\/javascript\b/],
    ['/data.json', 'data.json', /^application\/json\b/],
    ['/image.png', 'image.png', /^image\/png$/],
    ['/index.html', 'index.html', /^text\/html\b/],
    ['/big.bin', 'big.bin', /^application\/octet-stream$/],
  ];
  for (const [urlPath, file, ctype] of cases) {
    test(`GET ${urlPath}`, async () => {
      const r = await fetchPath(urlPath);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') || '', ctype);
      const body = Buffer.from(await r.arrayBuffer());
      assert.ok(body.equals(Buffer.from(WEB_FIXTURES[file])), `body of ${urlPath} is the file`);
      assert.equal(Number(r.headers.get('content-length')), body.length);
      assert.ok(r.headers.get('etag'), 'ETag present');
      assert.ok(r.headers.get('last-modified'), 'Last-Modified present');
      assert.ok(!Number.isNaN(Date.parse(r.headers.get('last-modified'))), 'Last-Modified is an HTTP date');
    });
  }

  test('GET / serves index.html', async () => {
    const r = await fetchPath('/');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /^text\/html\b/);
    assert.equal(await r.text(), WEB_FIXTURES['index.html']);
  });

  test('GET /sub/ serves sub/index.html', async () => {
    const r = await fetchPath('/sub/');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), WEB_FIXTURES['sub/index.html']);
  });

  test('GET /sub (no slash) serves the index or redirects to /sub/', async () => {
    const r = await fetchPath('/sub', { redirect: 'manual' });
    if (r.status === 200) assert.equal(await r.text(), WEB_FIXTURES['sub/index.html']);
    else {
      assert.ok([301, 302, 307, 308].includes(r.status), `status ${r.status}`);
      assert.match(r.headers.get('location') || '', /\/sub\/$/);
    }
  });

  test('percent-encoded names are decoded', async () => {
    const r = await fetchPath('/hello%20world.txt');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), WEB_FIXTURES['hello world.txt']);
  });

  test('the query string is ignored', async () => {
    const r = await fetchPath('/a.txt?v=123&x=%2e%2e');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), WEB_FIXTURES['a.txt']);
  });

  test('a missing file is 404', async () => {
    const r = await fetchPath('/nope.txt');
    assert.equal(r.status, 404);
    await r.arrayBuffer();
  });

  test('POST to a static file is 405', async () => {
    const r = await fetchPath('/a.txt', { method: 'POST', body: 'x' });
    assert.equal(r.status, 405);
    await r.arrayBuffer();
  });
});

describe('HEAD', () => {
  test('HEAD has the GET headers and no body', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(`HEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\n`);
      const h = await c.readResponse({ head: true });
      assert.equal(h.status, 200);
      assert.equal(Number(h.headers['content-length']), Buffer.byteLength(WEB_FIXTURES['style.css']));
      assert.match(h.headers['content-type'] || '', /^text\/css\b/);
      assert.ok(h.headers.etag);
      // If HEAD had sent a body, it would now be in front of this response.
      await c.write(get('/a.txt'));
      const g = await c.readResponse();
      assert.equal(g.status, 200);
      assert.equal(g.body.toString(), WEB_FIXTURES['a.txt']);
    } finally {
      c.destroy();
    }
  });
});

describe('conditional requests', () => {
  let etag;
  let lastModified;

  test('ETag and Last-Modified are stable across requests', async () => {
    const r1 = await fetchPath('/data.json');
    await r1.arrayBuffer();
    const r2 = await fetchPath('/data.json');
    await r2.arrayBuffer();
    etag = r1.headers.get('etag');
    lastModified = r1.headers.get('last-modified');
    assert.ok(etag);
    assert.equal(r2.headers.get('etag'), etag);
    assert.equal(r2.headers.get('last-modified'), lastModified);
    const r3 = await fetchPath('/a.txt');
    await r3.arrayBuffer();
    assert.notEqual(r3.headers.get('etag'), etag, 'different files have different ETags');
  });

  test('matching If-None-Match gives 304 with no body', async () => {
    const { response } = await rawRequest(srv.port, get('/data.json', `If-None-Match: ${etag}\r\n`));
    assert.equal(response.status, 304);
    assert.equal(response.headers.etag, etag);
  });

  test('If-None-Match with a list containing the ETag gives 304', async () => {
    const { response } = await rawRequest(srv.port, get('/data.json', `If-None-Match: "nope", ${etag}\r\n`));
    assert.equal(response.status, 304);
  });

  test('a 304 carries no body bytes (the next response parses)', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(get('/data.json', `If-None-Match: ${etag}\r\n`) + get('/b.txt'));
      const r1 = await c.readResponse();
      assert.equal(r1.status, 304);
      const r2 = await c.readResponse();
      assert.equal(r2.status, 200);
      assert.equal(r2.body.toString(), WEB_FIXTURES['b.txt']);
    } finally {
      c.destroy();
    }
  });

  test('non-matching If-None-Match gives 200', async () => {
    const r = await fetchPath('/data.json', { headers: { 'If-None-Match': '"definitely-not-it"' } });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), WEB_FIXTURES['data.json']);
  });

  test('If-Modified-Since equal to Last-Modified gives 304', async () => {
    const { response } = await rawRequest(srv.port, get('/data.json', `If-Modified-Since: ${lastModified}\r\n`));
    assert.equal(response.status, 304);
  });

  test('If-Modified-Since later than Last-Modified gives 304', async () => {
    const later = new Date(Date.parse(lastModified) + 3600e3).toUTCString();
    const { response } = await rawRequest(srv.port, get('/data.json', `If-Modified-Since: ${later}\r\n`));
    assert.equal(response.status, 304);
  });

  test('If-Modified-Since older than Last-Modified gives 200', async () => {
    const older = new Date(Date.parse(lastModified) - 86400e3).toUTCString();
    const r = await fetchPath('/data.json', { headers: { 'If-Modified-Since': older } });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), WEB_FIXTURES['data.json']);
  });
});

describe('path traversal is refused', () => {
  const paths = [
    '/../secret.txt',
    '/sub/../../secret.txt',
    '/%2e%2e/secret.txt',
    '/%2E%2E/secret.txt',
    '/sub/%2e%2e/%2e%2e/secret.txt',
    '/..%2fsecret.txt',
    '/sub/..%2f..%2fsecret.txt',
    '/%2e%2e%2fsecret.txt',
    '/..\\secret.txt',
    '/..%5csecret.txt',
    '/a.txt%00.html',
    '/%00',
    '/link-out.txt',
    '/link-dir/secret.txt',
    '/sub/../a.txt',
    '/./../secret.txt',
  ];
  for (const p of paths) {
    test(`GET ${p}`, async () => {
      const { response } = await rawRequest(srv.port, get(p, 'Connection: close\r\n'));
      assert.ok([400, 404].includes(response.status), `status ${response.status} for ${p}`);
      assert.ok(!response.body.toString('latin1').includes(SECRET_CONTENT.trim()), 'secret not served');
    });
  }

  test('the server still serves files afterwards', async () => {
    const r = await fetchPath('/sub/inner.txt');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), WEB_FIXTURES['sub/inner.txt']);
  });
});
