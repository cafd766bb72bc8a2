// Picture upload and serving (docs/MEDIA.md): POST /media with each of the four
// types, raw and multipart; the size read from the headers; GET returns the same
// bytes with the type of the name, nosniff, immutable caching and the ETag; the
// same bytes twice are one file; a non-image, a truncated or malformed picture,
// an oversized body, a missing token, bad names and traversal are refused with
// nothing stored; --upload-concurrency answers 503 busy; the token is checked
// before a slot is taken or the body read, 2 slots per user; other paths keep
// --max-body; a GET of a large picture is streamed, so paused readers do not
// hold the file in chatd's memory; the checks of a pathological upload (a GIF
// of 1-byte sub-blocks at --max-upload) run off the event loop, which keeps
// answering meanwhile. Every picture is built here, byte by byte (PNG through zlib).
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import zlib from 'node:zlib';
import { startServer, sleep, PNG_1x1, HOST } from './lib/server.mjs';
import { RawConn, rawRequest, json } from './lib/http.mjs';
import { RawWs } from './lib/ws.mjs';
import { register, uname } from './lib/chat.mjs';
import { clientContext, tlsPort } from './lib/tls.mjs';

// ---- pictures -------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** A real RGB PNG of w x h (a gradient; `seed` changes the pixels, so the bytes). */
function png(w, h, seed = 0) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const rows = [];
  for (let y = 0; y < Math.min(h, 64); y++) {
    const row = Buffer.alloc(1 + 3 * Math.min(w, 64));
    for (let i = 1; i < row.length; i++) row[i] = (i * 7 + y * 13 + seed) & 255;
    rows.push(row);
  }
  // (for large sides the pixel data is short: we identify, never decode)
  return Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}
const u16be = (v) => Buffer.from([(v >> 8) & 255, v & 255]);
const u16le = (v) => Buffer.from([v & 255, (v >> 8) & 255]);
const u32le = (v) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
/** A baseline JPEG's structure: SOI, APP0, SOF0 with the size, SOS, data, EOI. */
function jpeg(w, h) {
  return Buffer.concat([
    Buffer.from('ffd8', 'hex'),
    Buffer.from('ffe000104a46494600010100000100010000', 'hex'),
    Buffer.from('ffc00011', 'hex'),
    Buffer.from([8]),
    u16be(h),
    u16be(w),
    Buffer.from('03011100021101031101', 'hex'),
    Buffer.from('ffda000c03010002110311003f00', 'hex'),
    Buffer.from('1234ff0056', 'hex'),
    Buffer.from('ffd9', 'hex'),
  ]);
}
/** A GIF89a with a 2-colour table and one image. */
function gif(w, h) {
  return Buffer.concat([
    Buffer.from('GIF89a', 'latin1'),
    u16le(w),
    u16le(h),
    Buffer.from('800000000000ffffff', 'hex'),
    Buffer.from('21f90400000000002c00000000', 'hex'),
    u16le(w),
    u16le(h),
    Buffer.from('0002024401003b', 'hex'),
  ]);
}
/** A lossless WebP (RIFF, one VP8L chunk). */
function webp(w, h) {
  const vp8l = Buffer.concat([Buffer.from('VP8L', 'latin1'), u32le(5), Buffer.from([0x2f]), u32le((w - 1) | ((h - 1) << 14)), Buffer.from([0])]);
  return Buffer.concat([Buffer.from('RIFF', 'latin1'), u32le(vp8l.length + 4), Buffer.from('WEBP', 'latin1'), vp8l]);
}

const PICTURES = [
  { kind: 'png', mime: 'image/png', w: 33, h: 17, bytes: png(33, 17) },
  { kind: 'jpg', mime: 'image/jpeg', w: 1024, h: 768, bytes: jpeg(1024, 768) },
  { kind: 'gif', mime: 'image/gif', w: 5, h: 3, bytes: gif(5, 3) },
  { kind: 'webp', mime: 'image/webp', w: 300, h: 200, bytes: webp(300, 200) },
];

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

// ---- servers --------------------------------------------------------------

const MAX_UPLOAD = 65536;
const MAX_BODY = 4096;
const [srv, one] = await Promise.all([
  startServer({ options: { 'max-upload': MAX_UPLOAD, 'max-body': MAX_BODY } }),
  startServer({ options: { 'upload-concurrency': 1, 'header-timeout': 1 } }),
]);
after(() => Promise.all([srv.stop(), one.stop()]));
const alice = await register(srv, uname('media'));
const carol = await register(srv, uname('media'));
const bob = await register(one, uname('media'));
const mediaDir = (s) => path.join(s.dataDir, 'media');
const listMedia = async (s) => (await fsp.readdir(mediaDir(s))).sort();

async function upload(s, body, { token = alice.token, contentType = 'application/octet-stream', headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (contentType && !(body instanceof FormData)) h['Content-Type'] = contentType;
  const r = await fetch(`${s.url}/media`, { method: 'POST', headers: h, body, signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: r.status, headers: r.headers, text, body: parsed };
}

/** multipart/form-data as uni.uploadFile sends it: a form field, then the file part. */
function uniMultipart(bytes, filename = 'photo.jpg') {
  const boundary = '----uniapp' + crypto.randomBytes(8).toString('hex');
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="user"\r\n\r\nalice\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

function assertError(r, status, code) {
  assert.equal(r.status, status, `HTTP ${r.status}: ${r.text}`);
  assert.equal(r.body?.status, false, r.text);
  assert.equal(r.body?.code, code, r.text);
}

function assertStored(r, pic) {
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.status, true);
  const d = r.body.data;
  assert.equal(d.type, pic.mime);
  assert.equal(d.width, pic.w);
  assert.equal(d.height, pic.h);
  assert.equal(d.size, pic.bytes.length);
  assert.equal(d.url, `/media/${sha256(pic.bytes)}.${pic.kind}`, 'the name is the SHA-256 of the bytes and the type');
  return d;
}

// ---- tests ------------------------------------------------------------------

describe('upload and serve each type', () => {
  for (const pic of PICTURES) {
    test(`${pic.kind}: raw body, then GET gives the same bytes and headers`, async () => {
      // the client's Content-Type says nothing: the bytes decide
      const d = assertStored(await upload(srv, pic.bytes, { contentType: 'text/plain' }), pic);
      const g = await fetch(srv.url + d.url, { signal: AbortSignal.timeout(3000) });
      assert.equal(g.status, 200);
      assert.ok(Buffer.from(await g.arrayBuffer()).equals(pic.bytes), 'identical bytes');
      assert.equal(g.headers.get('content-type'), pic.mime);
      assert.equal(g.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(g.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(g.headers.get('etag'), `"${d.url.slice(7)}"`);
      assert.equal(Number(g.headers.get('content-length')), pic.bytes.length);
      const onDisk = await fsp.readFile(path.join(mediaDir(srv), d.url.slice(7)));
      assert.ok(onDisk.equals(pic.bytes), 'stored under --media-dir by name');
    });

    test(`${pic.kind}: multipart as uni.uploadFile sends it`, async () => {
      const mp = uniMultipart(pic.bytes, `x.${pic.kind === 'png' ? 'gif' : 'png'}`); // a lying name
      assertStored(await upload(srv, mp.body, { contentType: mp.contentType }), pic);
    });

    test(`${pic.kind}: multipart from a browser's FormData`, async () => {
      const fd = new FormData();
      fd.append('caption', 'hello');
      fd.append('file', new Blob([pic.bytes], { type: 'image/x-whatever' }), 'pasted');
      assertStored(await upload(srv, fd), pic);
    });
  }

  test('chunked upload (Transfer-Encoding: chunked) is read up to --max-upload', async () => {
    const pic = { kind: 'png', mime: 'image/png', w: 40, h: 30, bytes: png(40, 30, 9) };
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const half = pic.bytes.length >> 1;
      for (const part of [pic.bytes.subarray(0, half), pic.bytes.subarray(half)]) {
        await c.write(`${part.length.toString(16)}\r\n`);
        await c.write(part);
        await c.write('\r\n');
        await sleep(20);
      }
      await c.write('0\r\n\r\n');
      const r = await c.readResponse();
      assertStored({ status: r.status, body: json(r), text: r.body.toString() }, pic);
    } finally {
      c.destroy();
    }
  });

  test('the PNG_1x1 fixture of the harness is a valid 1x1 PNG', async () => {
    const pic = { kind: 'png', mime: 'image/png', w: 1, h: 1, bytes: PNG_1x1 };
    assertStored(await upload(srv, PNG_1x1), pic);
  });

  test('HEAD gives the headers and the length, If-None-Match gives 304', async () => {
    const d = assertStored(await upload(srv, PICTURES[0].bytes), PICTURES[0]);
    const { response: h } = await rawRequest(srv.port, `HEAD ${d.url} HTTP/1.1\r\nHost: x\r\n\r\n`, { head: true });
    assert.equal(h.status, 200);
    assert.equal(Number(h.headers['content-length']), PICTURES[0].bytes.length);
    assert.equal(h.headers['content-type'], 'image/png');
    assert.equal(h.body.length, 0);
    const n = await fetch(srv.url + d.url, { headers: { 'If-None-Match': `"${d.url.slice(7)}"` } });
    assert.equal(n.status, 304);
    assert.equal(n.headers.get('etag'), `"${d.url.slice(7)}"`);
  });
});

describe('content addressing', () => {
  test('the same bytes twice, raw and multipart, are one file with one URL', async () => {
    const pic = { kind: 'gif', mime: 'image/gif', w: 77, h: 66, bytes: gif(77, 66) };
    const a = assertStored(await upload(srv, pic.bytes), pic);
    const mp = uniMultipart(pic.bytes);
    const b = assertStored(await upload(srv, mp.body, { contentType: mp.contentType }), pic);
    const c = assertStored(await upload(srv, pic.bytes), pic);
    assert.equal(a.url, b.url);
    assert.equal(b.url, c.url);
    const files = await listMedia(srv);
    assert.equal(files.filter((f) => f === a.url.slice(7)).length, 1);
    assert.deepEqual(
      files.filter((f) => f.startsWith('.')),
      [],
      'no temporary file left behind',
    );
  });

  test('different bytes get different names; the media directory is 0700', async () => {
    const a = (await upload(srv, png(8, 8, 1))).body.data.url;
    const b = (await upload(srv, png(8, 8, 2))).body.data.url;
    assert.notEqual(a, b);
    const st = await fsp.stat(mediaDir(srv));
    assert.equal(st.mode & 0o777, 0o700);
  });
});

describe('refused uploads store nothing', () => {
  const refusals = [
    ['a text file named .png', () => ({ body: Buffer.from('just some text, renamed to cat.png\n'), contentType: 'image/png' }), 415, 'unsupported_media_type'],
    ['a text file in multipart as x.png', () => uniMultipart(Buffer.from('<svg onload=alert(1)>'), 'x.png'), 415, 'unsupported_media_type'],
    ['an HTML page', () => ({ body: Buffer.from('<!doctype html><script>alert(1)</script>') }), 415, 'unsupported_media_type'],
    ['a truncated PNG (IEND missing)', () => ({ body: png(20, 20, 5).subarray(0, -12) }), 400, 'truncated_image'],
    ['a truncated PNG (cut inside IDAT)', () => ({ body: png(20, 20, 6).subarray(0, 60) }), 400, 'truncated_image'],
    ['a truncated JPEG (no EOI)', () => ({ body: jpeg(640, 480).subarray(0, -2) }), 400, 'truncated_image'],
    ['a truncated JPEG (cut in the header)', () => ({ body: jpeg(640, 480).subarray(0, 30) }), 400, 'truncated_image'],
    ['a truncated GIF', () => ({ body: gif(9, 9).subarray(0, -1) }), 400, 'truncated_image'],
    ['a truncated WebP', () => ({ body: webp(9, 9).subarray(0, -3) }), 400, 'truncated_image'],
    ['a truncated JPEG in multipart', () => uniMultipart(jpeg(10, 10).subarray(0, -2)), 400, 'truncated_image'],
    ['a PNG of width 0', () => ({ body: png(0, 5) }), 400, 'bad_image'],
    ['a PNG wider than 20000 px', () => ({ body: png(20001, 5) }), 400, 'bad_image'],
    ['a JPEG taller than 20000 px', () => ({ body: jpeg(5, 30000) }), 400, 'bad_image'],
    ['a PNG with HTML after IEND', () => ({ body: Buffer.concat([png(4, 4, 7), Buffer.from('<html>')]) }), 400, 'bad_image'],
    ['an empty body', () => ({ body: Buffer.alloc(0) }), 400, 'empty_file'],
    ['multipart without its closing boundary', () => {
      const mp = uniMultipart(png(3, 3, 8));
      return { body: mp.body.subarray(0, -20), contentType: mp.contentType };
    }, 400, 'bad_multipart'],
    ['multipart without a boundary', () => ({ body: png(3, 3, 8), contentType: 'multipart/form-data' }), 400, 'bad_multipart'],
    ['multipart/mixed', () => ({ body: png(3, 3, 8), contentType: 'multipart/mixed; boundary=x' }), 400, 'bad_multipart'],
    ['multipart with two files', () => {
      const b = 'BOUNDARY42';
      const part = (n, bytes) => Buffer.concat([Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="${n}"; filename="${n}.png"\r\n\r\n`), bytes, Buffer.from('\r\n')]);
      return { body: Buffer.concat([part('a', png(3, 3, 10)), part('b', png(3, 3, 11)), Buffer.from(`--${b}--\r\n`)]), contentType: `multipart/form-data; boundary=${b}` };
    }, 400, 'bad_multipart'],
  ];
  for (const [what, make, status, code] of refusals) {
    test(`${what}: ${status} ${code}`, async () => {
      const before = await listMedia(srv);
      const { body, contentType } = make();
      assertError(await upload(srv, body, { contentType }), status, code);
      assert.deepEqual(await listMedia(srv), before, 'nothing stored');
    });
  }
});

describe('limits', () => {
  test('a body over --max-upload: 413 from Content-Length, before the body is sent', async () => {
    const req = `POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${MAX_UPLOAD + 1}\r\n\r\n`;
    const { response } = await rawRequest(srv.port, req, { timeoutMs: 900 });
    assert.equal(response.status, 413);
    assert.equal(json(response).code, 'too_large');
  });

  test('a chunked body over --max-upload: 413 while it is read', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = Buffer.alloc(16384, 0x41);
      let answered = null;
      c.readResponse({ timeoutMs: 4000 }).then(
        (r) => (answered = r),
        () => {},
      );
      for (let sent = 0; sent < 4 * MAX_UPLOAD && !answered && !c.ended; sent += chunk.length) {
        await c.write(`${chunk.length.toString(16)}\r\n`);
        await c.write(chunk);
        await c.write('\r\n');
        await sleep(5);
      }
      const r = answered || (await c.readResponse({ timeoutMs: 2000 }));
      assert.equal(r.status, 413);
      assert.equal(json(r).code, 'too_large');
    } finally {
      c.destroy();
    }
  });

  test('a body of exactly --max-upload bytes is read (and judged by its bytes)', async () => {
    const body = Buffer.alloc(MAX_UPLOAD, 0x20);
    assertError(await upload(srv, body), 415, 'unsupported_media_type');
  });

  test('other paths keep --max-body (413), and chunked bodies (411)', async () => {
    const big = JSON.stringify({ username: 'x', password: 'y'.repeat(MAX_BODY) });
    const r = await fetch(`${srv.url}/user/login`, { method: 'POST', body: big, headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 413);
    assert.equal((await r.json()).code, 'too_large');
    // the same size is fine on /media (judged as a picture)
    assertError(await upload(srv, Buffer.from(big)), 415, 'unsupported_media_type');
    const chunked =
      `POST /chat/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\nContent-Type: application/json\r\n` +
      `Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`;
    const { response } = await rawRequest(srv.port, chunked);
    assert.equal(response.status, 411);
  });
});

describe('authentication', () => {
  test('no token: 401 before the body is read', async () => {
    const req = `POST /media HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n`;
    const { response } = await rawRequest(srv.port, req, { timeoutMs: 900 });
    assert.equal(response.status, 401);
    assert.equal(json(response).code, 'unauthorized');
  });

  test('a wrong token: 401, nothing stored', async () => {
    const before = await listMedia(srv);
    assertError(await upload(srv, png(6, 6, 12), { token: 'x'.repeat(43) }), 401, 'unauthorized');
    assert.deepEqual(await listMedia(srv), before);
  });

  test('the token header works as for the chat endpoints', async () => {
    const pic = { kind: 'png', mime: 'image/png', w: 6, h: 7, bytes: png(6, 7, 13) };
    assertStored(await upload(srv, pic.bytes, { token: null, headers: { token: alice.token } }), pic);
  });

  test('GET /media and other methods: 405', async () => {
    assert.equal((await fetch(`${srv.url}/media`)).status, 405);
    const d = assertStored(await upload(srv, PICTURES[2].bytes), PICTURES[2]);
    assert.equal((await fetch(srv.url + d.url, { method: 'DELETE' })).status, 405);
    assert.equal((await fetch(srv.url + d.url, { method: 'POST', headers: { Authorization: `Bearer ${alice.token}` } })).status, 405);
  });
});

describe('names', () => {
  const hex = 'ab'.repeat(32);
  const bad = [
    '/media/',
    '/media/abc.png',
    `/media/${hex}`,
    `/media/${hex}.`,
    `/media/${hex}.PNG`,
    `/media/${hex}.svg`,
    `/media/${hex}.html`,
    `/media/${hex}.png.html`,
    `/media/${hex.toUpperCase()}.png`,
    `/media/${hex}a.png`,
    `/media/${hex.slice(1)}.png`,
    `/media/${hex}.png/`,
    `/media/${hex}.png`, // well formed, not stored
  ];
  for (const p of bad) {
    test(`GET ${p.length > 40 ? p.slice(0, 20) + '…' + p.slice(-12) : p}: 404`, async () => {
      const r = await fetch(srv.url + p, { signal: AbortSignal.timeout(3000) });
      assert.equal(r.status, 404);
      assert.equal((await r.json()).code, 'not_found');
    });
  }

  test('path traversal never leaves the media directory', async () => {
    // the database and a file of ours beside the media directory
    await fsp.writeFile(path.join(srv.dataDir, 'secret.png'), 'TOP-SECRET');
    const stored = assertStored(await upload(srv, PICTURES[3].bytes), PICTURES[3]).url.slice(7);
    const attempts = [
      '/media/../secret.png',
      '/media/..%2fsecret.png',
      '/media/%2e%2e/secret.png',
      '/media/%2e%2e%2fchatd.db',
      '/media/../chatd.db',
      '/media/..\\secret.png',
      `/media/${stored}/../../secret.png`,
      `/media/./${stored}`,
      `/media//${stored}`,
      `/media/${stored}%00.png`,
      `/media/${stored.replace('.webp', '%2ewebp')}`,
    ];
    for (const p of attempts) {
      const { response } = await rawRequest(srv.port, `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.equal(response.status, 404, `${p} -> ${response.status}`);
      assert.ok(!response.body.toString('latin1').includes('TOP-SECRET'), p);
      assert.ok(!response.body.toString('latin1').includes('SQLite'), p);
    }
  });
});

describe('--upload-concurrency', () => {
  test('a second upload while one is being received: 503 busy; the slot comes back after', async () => {
    const pic = { kind: 'png', mime: 'image/png', w: 12, h: 12, bytes: png(12, 12, 20) };
    const slow = await RawConn.connect(one.port);
    try {
      await slow.write(
        `POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${bob.token}\r\nContent-Length: ${pic.bytes.length}\r\n\r\n`,
      );
      await slow.write(pic.bytes.subarray(0, 10));
      await sleep(200);
      assertError(await upload(one, png(5, 5, 21), { token: bob.token }), 503, 'busy');
      await slow.write(pic.bytes.subarray(10));
      const r = await slow.readResponse();
      assertStored({ status: r.status, body: json(r), text: r.body.toString() }, pic);
    } finally {
      slow.destroy();
    }
    const again = { kind: 'png', mime: 'image/png', w: 5, h: 5, bytes: png(5, 5, 22) };
    assertStored(await upload(one, again.bytes, { token: bob.token }), again);
  });

  test('an upload abandoned half way gives its slot back', async () => {
    const c = await RawConn.connect(one.port);
    await c.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${bob.token}\r\nContent-Length: 5000\r\n\r\nabc`);
    await sleep(200);
    assertError(await upload(one, png(5, 5, 23), { token: bob.token }), 503, 'busy');
    c.reset();
    // the server notices the reset on its next read: give it up to 2 s
    const pic = { kind: 'png', mime: 'image/png', w: 5, h: 5, bytes: png(5, 5, 23) };
    let r;
    for (let i = 0; i < 20; i++) {
      await sleep(100);
      r = await upload(one, pic.bytes, { token: bob.token });
      if (r.status !== 503) break;
    }
    assertStored(r, pic);
  });

  test('a slow upload that keeps sending outlives --header-timeout; a stalled one gets 408', async () => {
    const pic = { kind: 'png', mime: 'image/png', w: 9, h: 9, bytes: png(9, 9, 24) };
    const c = await RawConn.connect(one.port);
    try {
      await c.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${bob.token}\r\nContent-Length: ${pic.bytes.length}\r\n\r\n`);
      const step = Math.ceil(pic.bytes.length / 5);
      for (let i = 0; i < pic.bytes.length; i += step) {
        await sleep(450); // 5 x 450 ms > --header-timeout 1 s, each gap under it
        await c.write(pic.bytes.subarray(i, i + step));
      }
      const r = await c.readResponse();
      assertStored({ status: r.status, body: json(r), text: r.body.toString() }, pic);
    } finally {
      c.destroy();
    }
    const stalled = await RawConn.connect(one.port);
    try {
      await stalled.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${bob.token}\r\nContent-Length: 100\r\n\r\nabc`);
      const r = await stalled.readResponse({ timeoutMs: 4000 });
      assert.equal(r.status, 408);
    } finally {
      stalled.destroy();
    }
  });
});

describe('slots only after the token', () => {
  test('an unknown token: 401 before any byte of the body is sent', async () => {
    const req = `POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'z'.repeat(43)}\r\nContent-Length: 50000\r\n\r\n`;
    const { response } = await rawRequest(one.port, req, { timeoutMs: 900 });
    assert.equal(response.status, 401);
    assert.equal(json(response).code, 'unauthorized');
    assert.equal(response.headers.connection, 'close', 'the unread body cannot be skipped: closed');
  });

  test('clients with made-up tokens trickling bytes hold no slot (--upload-concurrency 1)', async () => {
    const fakes = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = await RawConn.connect(one.port);
        fakes.push(c);
        await c.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fake${i}\r\nContent-Length: 5000\r\n\r\n`);
        await c.write('abc');
      }
      await sleep(100);
      for (const c of fakes) await c.write('def'); // still trickling
      const pic = { kind: 'png', mime: 'image/png', w: 7, h: 5, bytes: png(7, 5, 30) };
      assertStored(await upload(one, pic.bytes, { token: bob.token }), pic);
      for (const c of fakes) {
        const r = await c.readResponse({ timeoutMs: 2000 });
        assert.equal(r.status, 401);
      }
    } finally {
      for (const c of fakes) c.destroy();
    }
  });

  test('at most 2 slots per user: a third upload of the same user gets 429, another user gets through', async () => {
    const pics = [png(11, 3, 31), png(11, 3, 32)];
    const slow = [];
    try {
      for (const bytes of pics) {
        const c = await RawConn.connect(srv.port);
        slow.push(c);
        await c.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice.token}\r\nContent-Length: ${bytes.length}\r\n\r\n`);
        await c.write(bytes.subarray(0, 10));
      }
      await sleep(200);
      assertError(await upload(srv, png(4, 4, 33)), 429, 'rate_limited');
      const other = { kind: 'png', mime: 'image/png', w: 4, h: 4, bytes: png(4, 4, 34) };
      assertStored(await upload(srv, other.bytes, { token: carol.token }), other);
      for (let i = 0; i < 2; i++) {
        await slow[i].write(pics[i].subarray(10));
        const r = await slow[i].readResponse();
        assertStored({ status: r.status, body: json(r), text: r.body.toString() }, { kind: 'png', mime: 'image/png', w: 11, h: 3, bytes: pics[i] });
      }
    } finally {
      for (const c of slow) c.destroy();
    }
    // both slots are back
    const again = { kind: 'png', mime: 'image/png', w: 4, h: 4, bytes: png(4, 4, 33) };
    assertStored(await upload(srv, again.bytes), again);
  });
});

describe('the checks run off the event loop', () => {
  // The slowest picture to check per byte: a GIF whose image data is 1-byte
  // sub-blocks and which never ends, so the probe walks every sub-block
  // before refusing it. Probed on the loop thread, a 64 MiB one held the loop
  // for ~75 ms (seconds at the largest --max-upload); on the thread pool the
  // loop keeps answering. (A multipart body of tiny fields is as slow, but
  // ASan checks the whole rest of the body at each memmem: quadratic there.)
  const SIZE = 64 << 20;
  function slowGif() {
    const head = Buffer.concat([Buffer.from('GIF89a', 'latin1'), u16le(1), u16le(1), Buffer.from('800000000000ffffff', 'hex'),
      Buffer.from('2c00000000', 'hex'), u16le(1), u16le(1), Buffer.from('02', 'hex')]);
    return Buffer.concat([head, Buffer.alloc(SIZE - head.length, 1)]); // 01 01 01 ...: 1-byte sub-blocks, no end
  }

  test('WebSocket pings are answered while a maximal pathological upload is checked; it is refused, nothing stored', async (t) => {
    const big = await startServer({ options: { 'max-upload': SIZE } });
    const user = await register(big, uname('media'));
    const ws = await RawWs.connectClient(big.port);
    const c = await RawConn.connect(big.port);
    try {
      const body = slowGif();
      await c.write(`POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${user.token}\r\nContent-Length: ${body.length}\r\n\r\n`);
      await c.write(body);
      const sent = process.hrtime.bigint();
      let answered = false;
      const answer = c.readResponse({ timeoutMs: 30000 }).then(
        (response) => ((answered = true), { response }),
        (error) => ((answered = true), { error }),
      );
      // Round trips one after another from the moment the whole body is sent
      // until the answer: hundreds come back while the pool checks the GIF; a
      // loop held by the checks answers at most the one or two that arrive
      // while it still reads the end of the body.
      const rtts = [];
      while (!answered) {
        const t0 = process.hrtime.bigint();
        await ws.pingPong(30000);
        if (!answered) rtts.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      const { response: r, error } = await answer;
      if (error) throw error;
      const took = Number(process.hrtime.bigint() - sent) / 1e6;
      t.diagnostic(`answered ${took.toFixed(0)} ms after the body was sent; ${rtts.length} pongs before it, the slowest ${Math.max(0, ...rtts).toFixed(1)} ms`);
      assert.equal(r.status, 400, r.body.toString());
      assert.equal(json(r).code, 'truncated_image');
      assert.ok(rtts.length >= 10, `${rtts.length} pongs came back in the ${took.toFixed(0)} ms the upload was checked`);
      assert.deepEqual(
        (await fsp.readdir(mediaDir(big))).filter((f) => !f.startsWith('.')),
        [],
        'nothing stored',
      );
    } finally {
      c.destroy();
      ws.destroy();
      await big.stop();
    }
  });
});

describe('GET streams a large picture', () => {
  const BIG = 8 << 20;
  /** An 8 MiB PNG: a small image whose IDAT is padded with random bytes (never decoded). */
  function bigPng() {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(640, 0);
    ihdr.writeUInt32BE(480, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    const head = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), pngChunk('IHDR', ihdr)]);
    const tail = pngChunk('IEND', Buffer.alloc(0));
    const idat = crypto.randomBytes(BIG - head.length - tail.length - 12);
    return Buffer.concat([head, pngChunk('IDAT', idat), tail]);
  }
  /** A connection that reads nothing until resumed (TLS under CHATD_TEST_TLS). */
  function pausedConnect(port) {
    const t = tlsPort(port);
    return new Promise((resolve, reject) => {
      const tcp = net.connect({ port, host: HOST });
      const s = t ? tls.connect({ socket: tcp, host: HOST, secureContext: clientContext(t.ca) }) : tcp;
      s.once('error', reject);
      s.once(t ? 'secureConnect' : 'connect', () => {
        s.off('error', reject);
        s.pause();
        resolve(s);
      });
    });
  }
  const rssKiB = async (pid) => Number(/VmRSS:\s+(\d+)/.exec(await fsp.readFile(`/proc/${pid}/status`, 'utf8'))[1]);

  test('20 paused readers of an 8 MiB picture do not cost 20 x 8 MiB, and are closed when they stall; the bytes are intact', async (t) => {
    // under ASan, freed pieces would sit in its quarantine and count as RSS
    const asan = `${process.env.ASAN_OPTIONS ? process.env.ASAN_OPTIONS + ':' : ''}quarantine_size_mb=0:thread_local_quarantine_size_kb=0`;
    const big = await startServer({ options: { 'max-upload': 16 << 20, 'header-timeout': 2 }, env: { ASAN_OPTIONS: asan } });
    const user = await register(big, uname('media'));
    const sockets = [];
    try {
      const bytes = bigPng();
      const r = await upload(big, bytes, { token: user.token });
      assert.equal(r.status, 200, r.text);
      const url = r.body.data.url;
      // a normal reader gets the same bytes
      const g = await fetch(big.url + url, { signal: AbortSignal.timeout(10000) });
      assert.equal(g.status, 200);
      assert.equal(Number(g.headers.get('content-length')), bytes.length);
      assert.ok(Buffer.from(await g.arrayBuffer()).equals(bytes), 'identical bytes');
      await sleep(200);
      const before = await rssKiB(big.pid);
      for (let i = 0; i < 20; i++) {
        const s = await pausedConnect(big.port); // reads nothing: the kernel buffers fill, then chatd's queue
        s.write(`GET ${url} HTTP/1.1\r\nHost: x\r\n\r\n`);
        sockets.push(s);
      }
      await sleep(1000); // the queues fill at once; the 2 s stall close comes later
      const grown = (await rssKiB(big.pid)) - before;
      t.diagnostic(`RSS grew by ${grown} KiB`);
      // before streaming, each answer was queued whole: ~160 MiB here; now
      // each costs at most --max-outbuf (1 MiB) and one chunk
      assert.ok(grown < 48 * 1024, `RSS grew by ${grown} KiB for 20 paused fetches of 8 MiB`);
      // a reader that pauses for a second, then reads, gets every byte
      const readAll = (s) =>
        new Promise((res) => {
          const got = [];
          s.on('data', (d) => got.push(d));
          s.on('close', () => res(Buffer.concat(got)));
          s.on('error', () => {});
          s.resume();
        });
      const slowOne = await pausedConnect(big.port);
      sockets.push(slowOne);
      // (not end(): chatd takes a client's FIN as the end of the connection)
      slowOne.write(`GET ${url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      await sleep(1000);
      const all = await readAll(slowOne);
      const bodyAt = all.indexOf('\r\n\r\n') + 4;
      assert.match(all.subarray(0, bodyAt).toString('latin1'), /^HTTP\/1\.1 200 /);
      assert.equal(all.length - bodyAt, bytes.length, 'every byte after the pause');
      assert.ok(all.subarray(bodyAt).equals(bytes), 'identical bytes after the pause');
      // the readers that never read were closed after --header-timeout (2 s):
      // resumed now, they get the start of the answer and then the end
      await sleep(2500);
      const cut = await Promise.race([readAll(sockets[0]), sleep(5000).then(() => null)]);
      assert.ok(cut, 'closed by chatd');
      assert.ok(cut.length < bytes.length, `got ${cut?.length} bytes of ${bytes.length}`);
    } finally {
      for (const s of sockets) s.destroy();
      await big.stop();
    }
  });
});
