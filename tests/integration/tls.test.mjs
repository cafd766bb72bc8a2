// Native TLS (--tls-cert/--tls-key): https and wss on --listen with a
// throw-away CA, protocol versions and ciphers, ALPN, gateway pushes over wss
// (one frame, many connections, multi-record messages), the handshake timed
// out like a slow header, plain HTTP on the TLS port, and certificate reload
// on SIGHUP while connections stay up.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { startServer, sleep, waitFor } from './lib/server.mjs';
import { makeCA, httpsRequest, tlsConnect, wssClient } from './lib/tls.mjs';

const SECRET = 'tls-secret-0123456789';
let ca;
before(async () => {
  ca = await makeCA();
});
after(async () => {
  await ca?.cleanup();
});

async function tlsServer(t, cert, options = {}, args = []) {
  const srv = await startServer({ options: { 'tls-cert': cert.cert, 'tls-key': cert.key, 'api-secret': SECRET, ...options }, args });
  t.after(() => srv.stop());
  return srv;
}

const gw = (srv, method, body) =>
  httpsRequest(srv, ca.ca, 'POST', `/gateway/${method}`, { body, headers: { Authorization: `Bearer ${SECRET}` } });

/** Resolves when the peer closes the socket; the ms it took. */
function closedWithin(sock, timeoutMs) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(null), timeoutMs);
    sock.on('close', () => {
      clearTimeout(t);
      resolve(Date.now() - t0);
    });
    sock.on('error', () => {});
  });
}

describe('https and wss', { timeout: 30000 }, () => {
  test('GET /healthz over https: the chain verifies against the test CA, TLS 1.3, ALPN http/1.1', async (t) => {
    const cert = ca.issue('a', '1a2b3c');
    const srv = await tlsServer(t, cert);
    const r = await httpsRequest(srv, ca.ca, 'GET', '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.body.status, true);
    assert.equal(r.protocol, 'TLSv1.3');
    assert.equal(r.alpn, 'http/1.1');
    assert.equal(r.serial, cert.serial);
    // keep-alive: several requests on one connection, and a large static file
    const big = await httpsRequest(srv, ca.ca, 'GET', '/big.bin');
    assert.equal(big.status, 200);
    assert.equal(Number(big.headers['content-length']), 300000);
  });

  test('ALPN: a client offering h2 and http/1.1 gets http/1.1; one offering only h2 is refused', async (t) => {
    const srv = await tlsServer(t, ca.issue('alpn', '0a11'));
    const s = await tlsConnect(srv, { ca: ca.ca, ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(s.alpnProtocol, 'http/1.1');
    s.destroy();
    await assert.rejects(tlsConnect(srv, { ca: ca.ca, ALPNProtocols: ['h2'] }), /no application protocol|alert/i);
    // without ALPN at all: fine
    const s2 = await tlsConnect(srv, { ca: ca.ca });
    assert.equal(s2.alpnProtocol, false);
    s2.destroy();
  });

  test('TLS 1.2 works with ECDHE+AEAD; TLS 1.1 and a CBC-only TLS 1.2 client are refused', async (t) => {
    const srv = await tlsServer(t, ca.issue('ver', '0b22'));
    const s = await tlsConnect(srv, { ca: ca.ca, maxVersion: 'TLSv1.2' });
    assert.equal(s.getProtocol(), 'TLSv1.2');
    assert.match(s.getCipher().name, /^ECDHE-ECDSA-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
    s.destroy();
    // the client really offers TLS 1.1 (security level 0 lets it): the server's alert refuses it
    await assert.rejects(
      tlsConnect(srv, { ca: ca.ca, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }),
      /alert protocol version/i,
    );
    await assert.rejects(
      tlsConnect(srv, { ca: ca.ca, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA' }),
      /handshake failure|no shared cipher|alert/i,
    );
    // the server still serves after the refusals
    assert.equal((await httpsRequest(srv, ca.ca, 'GET', '/healthz')).status, 200);
  });

  test('wss: init, a gateway push, one frame to many connections, a message of many records', async (t) => {
    const srv = await tlsServer(t, ca.issue('wss', '0c33'));
    const a = await wssClient(srv, ca.ca);
    assert.equal(a.init.type, 'init');
    assert.equal(a.serial, '0C33');
    const r = await gw(srv, 'send_to_client', { client_id: a.init.client_id, data: 'hello over wss' });
    assert.equal(r.status, 200, r.text);
    assert.equal(await a.next(), 'hello over wss');

    const many = await Promise.all(Array.from({ length: 20 }, () => wssClient(srv, ca.ca)));
    t.after(() => [a, ...many].forEach((c) => c.ws.terminate()));
    const all = await gw(srv, 'send_to_all', { data: 'to everyone' });
    assert.equal(all.status, 200, all.text);
    for (const c of [a, ...many]) assert.equal(await c.next(), 'to everyone');

    // 200 KB: more than a dozen TLS records, one message
    const big = 'x'.repeat(200 * 1024 - 7) + '-the-end';
    await gw(srv, 'send_to_client', { client_id: many[3].init.client_id, data: big });
    assert.equal(await many[3].next(), big);
    // several small pushes in one pass arrive in order (coalesced records)
    await Promise.all([1, 2, 3, 4, 5].map((i) => gw(srv, 'send_to_client', { client_id: a.init.client_id, data: `m${i}` })));
    const got = [];
    for (let i = 0; i < 5; i++) got.push(await a.next());
    assert.deepEqual([...got].sort(), ['m1', 'm2', 'm3', 'm4', 'm5']);
  });

  test('wss with permessage-deflate: compressed pushes to several clients arrive intact', async (t) => {
    const srv = await tlsServer(t, ca.issue('defl', '0d55'), {}, ['--ws-deflate']);
    const cs = await Promise.all([1, 2, 3].map(() => wssClient(srv, ca.ca)));
    t.after(() => cs.forEach((c) => c.ws.terminate()));
    assert.match(cs[0].ws.extensions, /permessage-deflate/);
    const text = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ i, word: 'compressible' })));
    assert.equal((await gw(srv, 'send_to_all', { data: text })).status, 200);
    for (const c of cs) assert.equal(await c.next(), text);
  });

  test('wss echo of large client messages (decrypted input across reads)', async (t) => {
    const srv = await tlsServer(t, ca.issue('echo', '0d44'), { 'echo-path': '/echo' });
    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(srv.wsUrl('/echo'), { ca: ca.ca });
    t.after(() => ws.terminate());
    await new Promise((res, rej) => {
      ws.once('open', res);
      ws.once('error', rej);
    });
    const msgs = [];
    ws.on('message', (d) => msgs.push(d.toString('utf8')));
    const sizes = [1, 1000, 70000, 500000];
    for (const n of sizes) ws.send('y'.repeat(n - 1) + String(n % 10));
    await waitFor(() => msgs.length === sizes.length, { timeoutMs: 5000 });
    assert.deepEqual(
      msgs.map((m) => m.length),
      sizes,
    );
    for (let i = 0; i < sizes.length; i++) assert.ok(msgs[i].endsWith(String(sizes[i] % 10)));
  });
});

describe('misbehaving clients', { timeout: 30000 }, () => {
  test('a client that sends nothing, or stops mid-handshake, is closed after --header-timeout', async (t) => {
    const srv = await tlsServer(t, ca.issue('slow', '0e55'), { 'header-timeout': 1 });
    const silent = net.connect(srv.port, srv.host);
    // a TLS handshake record header that promises 512 bytes, and 3 of them
    const partial = net.connect(srv.port, srv.host, () => partial.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])));
    const [a, b] = await Promise.all([closedWithin(silent, 4000), closedWithin(partial, 4000)]);
    assert.ok(a !== null && a >= 900, `silent client closed after ${a} ms`);
    assert.ok(b !== null && b >= 900, `mid-handshake client closed after ${b} ms`);
    // a finished handshake that then sends no request is closed the same way
    const idle = await tlsConnect(srv, { ca: ca.ca });
    const c = await closedWithin(idle, 4000);
    assert.ok(c !== null && c >= 900, `idle TLS client closed after ${c} ms`);
    assert.equal((await httpsRequest(srv, ca.ca, 'GET', '/healthz')).status, 200);
  });

  test('plain HTTP on the TLS port gets a plain 400 and is closed; others are unharmed', async (t) => {
    const srv = await tlsServer(t, ca.issue('plain', '0f66'));
    const w = await wssClient(srv, ca.ca);
    t.after(() => w.ws.terminate());
    const sock = net.connect(srv.port, srv.host);
    const chunks = [];
    sock.on('data', (d) => chunks.push(d));
    sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const closed = await closedWithin(sock, 3000);
    assert.notEqual(closed, null, 'closed');
    const text = Buffer.concat(chunks).toString('latin1');
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(text, /use https:\/\/ or wss:\/\//);
    // garbage that is neither TLS nor HTTP: closed too
    const junk = net.connect(srv.port, srv.host, () => junk.write(Buffer.alloc(64, 0x41)));
    assert.notEqual(await closedWithin(junk, 3000), null);
    await gw(srv, 'send_to_client', { client_id: w.init.client_id, data: 'still here' });
    assert.equal(await w.next(), 'still here');
  });
});

describe('SIGHUP reload', { timeout: 30000 }, () => {
  test('a new certificate serves new connections; an open wss connection keeps working', async (t) => {
    const first = ca.issue('r1', '1001');
    const live = { cert: `${ca.dir}/live.crt`, key: `${ca.dir}/live.key` };
    fs.copyFileSync(first.cert, live.cert);
    fs.copyFileSync(first.key, live.key);
    const srv = await tlsServer(t, live);
    const old = await wssClient(srv, ca.ca);
    t.after(() => old.ws.terminate());
    assert.equal(old.serial, '1001');

    const second = ca.issue('r2', '2002');
    fs.copyFileSync(second.cert, live.cert);
    fs.copyFileSync(second.key, live.key);
    process.kill(srv.pid, 'SIGHUP');
    assert.ok(await waitFor(() => /serial 2002/.test(srv.stderr())), srv.stderr());

    const fresh = await wssClient(srv, ca.ca);
    t.after(() => fresh.ws.terminate());
    assert.equal(fresh.serial, '2002');
    assert.equal((await httpsRequest(srv, ca.ca, 'GET', '/healthz')).serial, '2002');
    // the old connection (old certificate, old context) still talks both ways
    await gw(srv, 'send_to_all', { data: 'after reload' });
    assert.equal(await old.next(), 'after reload');
    assert.equal(await fresh.next(), 'after reload');
    const pong = new Promise((res) => old.ws.once('pong', (d) => res(d.toString())));
    old.ws.ping('p');
    assert.equal(await pong, 'p');
  });

  test('a configuration file that names other files: SIGHUP loads those', async (t) => {
    const one = ca.issue('f1', '6006');
    const two = ca.issue('f2', '7007');
    const conf = `${ca.dir}/chatd.conf`;
    fs.writeFileSync(conf, `tls-cert = "${one.cert}"\ntls-key = "${one.key}"\n`);
    const srv = await startServer({ options: { config: conf, 'api-secret': SECRET }, tls: true });
    t.after(() => srv.stop());
    assert.equal((await httpsRequest(srv, ca.ca, 'GET', '/healthz')).serial, '6006');
    fs.writeFileSync(conf, `tls-cert = "${two.cert}"\ntls-key = "${two.key}"\n`);
    process.kill(srv.pid, 'SIGHUP');
    assert.ok(await waitFor(() => /serial 7007/.test(srv.stderr())), srv.stderr());
    assert.equal((await httpsRequest(srv, ca.ca, 'GET', '/healthz')).serial, '7007');
  });

  test('a bad certificate or a key that does not match keeps the old one', async (t) => {
    const good = ca.issue('g1', '3003');
    const live = { cert: `${ca.dir}/live2.crt`, key: `${ca.dir}/live2.key` };
    fs.copyFileSync(good.cert, live.cert);
    fs.copyFileSync(good.key, live.key);
    const srv = await tlsServer(t, live);
    const w = await wssClient(srv, ca.ca);
    t.after(() => w.ws.terminate());

    fs.writeFileSync(live.cert, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    process.kill(srv.pid, 'SIGHUP');
    assert.ok(await waitFor(() => /cannot load the certificate chain/.test(srv.stderr())), srv.stderr());
    assert.match(srv.stderr(), /keeping the certificate loaded before/);
    assert.equal((await httpsRequest(srv, ca.ca, 'GET', '/healthz')).serial, '3003');

    const other = ca.issue('g2', '4004');
    fs.copyFileSync(other.cert, live.cert); // the key stays good.key: a mismatch
    process.kill(srv.pid, 'SIGHUP');
    assert.ok(await waitFor(() => /key values mismatch|does not match/.test(srv.stderr())), srv.stderr());
    assert.equal((await httpsRequest(srv, ca.ca, 'GET', '/healthz')).serial, '3003');
    await gw(srv, 'send_to_client', { client_id: w.init.client_id, data: 'unharmed' });
    assert.equal(await w.next(), 'unharmed');
  });
});

test('start-up refuses a missing key or an unreadable certificate', async () => {
  const c = ca.issue('bad', '5005');
  await assert.rejects(startServer({ options: { 'tls-cert': c.cert } }), /--tls-cert and --tls-key go together/);
  await assert.rejects(startServer({ options: { 'tls-cert': `${ca.dir}/nope.crt`, 'tls-key': c.key } }), /cannot load the certificate chain/);
  await sleep(0);
});
