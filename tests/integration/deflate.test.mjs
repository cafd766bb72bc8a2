// permessage-deflate (RFC 7692) with --ws-deflate: the negotiation matrix
// (raw offers and every combination the npm `ws` client offers), messages of
// 16 B to 128 KiB both ways, fragmented compressed input from raw frames,
// compressed fan-out through send_to_all to deflate and plain clients, the
// threshold, a zip bomb (1009), RSV1 misuse (1002), and --ws-deflate off.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { startServer } from './lib/server.mjs';
import { call } from './lib/http.mjs';
import { RawWs, WsClient, OP, buildFrame, parseServerFrame, wsTlsOptions } from './lib/ws.mjs';

const MAX = 256 * 1024;
const SECRET = 'deflate-test-secret';
const srv = await startServer({
  options: { 'max-message': MAX, 'echo-path': '/echo', 'api-secret': SECRET },
  args: ['--ws-deflate'],
});
srv.secret = SECRET;
after(() => srv.stop());

/** Compresses as a permessage-deflate sender: raw deflate, sync flush, tail stripped. */
function pmdCompress(buf) {
  const z = zlib.deflateRawSync(buf, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.ok(z.subarray(-4).equals(Buffer.from([0, 0, 0xff, 0xff])));
  return z.subarray(0, -4);
}
const pmdInflate = (buf) =>
  zlib.inflateRawSync(Buffer.concat([buf, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: zlib.constants.Z_SYNC_FLUSH });

/** A raw handshake offering `ext`; returns {c, answer}. */
async function rawOffer(ext, path = '/echo') {
  const headers = ext === null ? {} : { 'Sec-WebSocket-Extensions': ext };
  const c = await RawWs.connect(srv.port, { path, headers });
  return { c, answer: c.response.headers['sec-websocket-extensions'] };
}

/** A ws client with perMessageDeflate options (false: none); c.answer is the server's Sec-WebSocket-Extensions. */
async function openDeflate(server, path, opts) {
  const ws = new WebSocket(server.wsUrl(path), { perMessageDeflate: opts, handshakeTimeout: 3000, ...wsTlsOptions(server) });
  const c = new WsClient(ws);
  ws.once('upgrade', (res) => (c.answer = res.headers['sec-websocket-extensions']));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  if (path === '/ws') {
    const m = await c.nextJson();
    assert.equal(m.type, 'init');
    c.clientId = m.client_id;
  }
  return c;
}

/** Reads one server frame, RSV bits allowed. */
const readAnyFrame = (c, ms = 3000) => c.conn.read((b) => parseServerFrame(b), ms, 'a frame');

describe('negotiation', () => {
  const cases = [
    ['permessage-deflate', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate; client_max_window_bits', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate; client_max_window_bits=10', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10'],
    ['permessage-deflate; client_max_window_bits="12"', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=12'],
    ['permessage-deflate; client_no_context_takeover', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate; server_max_window_bits=8', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8'],
    ['permessage-deflate; server_max_window_bits=15; client_no_context_takeover', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15'],
    // declined offers: the next one is taken
    ['permessage-deflate; server_max_window_bits, permessage-deflate', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate; server_max_window_bits=7, permessage-deflate; client_no_context_takeover', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10'],
    // declined outright: no extension, the connection still opens
    ['permessage-deflate; server_max_window_bits=16', undefined],
    ['permessage-deflate; client_max_window_bits=08', undefined],
    ['permessage-deflate; client_no_context_takeover; client_no_context_takeover', undefined],
    ['permessage-deflate; server_no_context_takeover=1', undefined],
    ['permessage-deflate; mystery', undefined],
    ['x-other-extension', undefined],
    [null, undefined],
  ];
  for (const [offer, want] of cases) {
    test(`offer ${JSON.stringify(offer)} -> ${JSON.stringify(want)}`, async () => {
      const { c, answer } = await rawOffer(offer);
      try {
        assert.equal(answer, want);
        assert.ok(await c.pingPong(), 'the connection works');
      } finally {
        c.destroy();
      }
    });
  }

  test('offers on two Sec-WebSocket-Extensions lines are one list (RFC 6455 11.3.2)', async () => {
    // two spellings of the header name: the request carries two lines
    const headers = { 'Sec-WebSocket-Extensions': 'x-webkit-deflate-frame', 'sec-websocket-extensions': 'permessage-deflate' };
    const c = await RawWs.connect(srv.port, { path: '/echo', headers });
    try {
      assert.equal(c.response.headers['sec-websocket-extensions'], 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
    } finally {
      c.destroy();
    }
  });

  // every combination of what the ws client can offer
  const combos = [];
  for (const serverNoContextTakeover of [false, true])
    for (const clientNoContextTakeover of [false, true])
      for (const serverMaxWindowBits of [undefined, 9, 15])
        for (const clientMaxWindowBits of [undefined, true, 8, 11])
          combos.push({ serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits });
  test(`the ws client's ${combos.length} offers are all accepted with the right answer, and messages go both ways`, async () => {
    for (const o of combos) {
      const opts = { threshold: 0 };
      for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== false) opts[k] = v;
      const c = await openDeflate(srv, '/echo', opts).catch((e) => {
        throw new Error(`${JSON.stringify(o)}: ${e.message}`);
      });
      try {
        // chatd always answers both no_context_takeover parameters (docs/API.md)
        let want = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
        if (o.serverMaxWindowBits) want += `; server_max_window_bits=${o.serverMaxWindowBits}`;
        if (typeof o.clientMaxWindowBits === 'number') want += `; client_max_window_bits=${o.clientMaxWindowBits}`;
        assert.equal(c.answer, want, JSON.stringify(o));
        const text = JSON.stringify({ o, pad: 'chat message '.repeat(60) });
        for (let i = 0; i < 3; i++) {
          c.send(text + i);
          assert.equal(await c.nextText(), text + i, JSON.stringify(o));
        }
      } finally {
        c.ws.terminate();
      }
    }
  });
});

const sizes = [16, 255, 256, 1000, 4096, 65535, 65536, 128 * 1024];
const textOf = (n) => {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `{"seq":${i},"text":"héllo wörld"}`;
  return s.slice(0, n).replace(/[\u0080-\uffff]$/, 'x');
};

describe('messages both ways', () => {
  for (const ctx of [{}, { clientNoContextTakeover: true }, { serverMaxWindowBits: 9, clientMaxWindowBits: 9 }]) {
    test(`16 B to 128 KiB, text and binary, through the echo (${JSON.stringify(ctx)})`, async () => {
      const c = await openDeflate(srv, '/echo', { threshold: 0, ...ctx });
      try {
        for (const n of sizes) {
          const t = textOf(n);
          c.send(t);
          assert.equal(await c.nextText(), t, `text of ${n}`);
          const b = Buffer.alloc(n, 7);
          c.send(b, { binary: true });
          const m = await c.next();
          assert.ok(m.isBinary && Buffer.from(m.data).equals(b), `binary of ${n}`);
        }
        // uncompressed from the client on the same connection (RSV1 clear) works too
        c.send('plain', { compress: false });
        assert.equal(await c.nextText(), 'plain');
      } finally {
        c.ws.terminate();
      }
    });
  }

  test('raw: compressed fragmented input, cut inside frames, answered compressed above the threshold only', async () => {
    const { c, answer } = await rawOffer('permessage-deflate; client_no_context_takeover');
    assert.match(answer, /permessage-deflate/);
    try {
      for (const n of [16, 300, 5000, 128 * 1024]) {
        const text = textOf(n);
        const z = pmdCompress(Buffer.from(text));
        const cut = [0, Math.floor(z.length / 3), Math.floor((2 * z.length) / 3), z.length];
        for (let k = 0; k < 3; k++) {
          const f = buildFrame({ fin: k === 2, rsv: k === 0 ? 4 : 0, opcode: k === 0 ? OP.TEXT : OP.CONT, payload: z.subarray(cut[k], cut[k + 1]) });
          const mid = Math.floor(f.length / 2);
          await c.sendRaw(f.subarray(0, mid));
          await c.sendRaw(f.subarray(mid));
        }
        const f = await readAnyFrame(c);
        assert.equal(f.opcode, OP.TEXT);
        if (n < 256) {
          assert.equal(f.rsv, 0, `${n} B is under the threshold: sent plain`);
          assert.equal(f.payload.toString(), text);
        } else {
          assert.equal(f.rsv, 4, `${n} B is compressed`);
          assert.equal(pmdInflate(f.payload).toString(), text);
        }
      }
    } finally {
      c.destroy();
    }
  });
});

describe('errors', () => {
  async function expectRawClose(frames, code, offer = 'permessage-deflate') {
    const { c } = await rawOffer(offer);
    try {
      for (const f of frames) await c.sendRaw(f);
      for (;;) {
        const f = await readAnyFrame(c);
        if (f.opcode === OP.CLOSE) {
          assert.equal(f.code, code, `close reason ${f.reason}`);
          return;
        }
      }
    } finally {
      c.destroy();
    }
  }

  test('a zip bomb: a small frame inflating past --max-message is closed 1009', async () => {
    const z = pmdCompress(Buffer.alloc(8 * MAX, 0x41)); // 2 MiB of 'A' in a few KiB
    assert.ok(z.length < 8192);
    await expectRawClose([buildFrame({ rsv: 4, opcode: OP.TEXT, payload: z })], 1009);
  });

  test('a zip bomb spread over fragments is closed 1009 too', async () => {
    const z = pmdCompress(Buffer.alloc(4 * MAX, 0x41));
    const h = Math.floor(z.length / 2);
    await expectRawClose(
      [buildFrame({ fin: false, rsv: 4, opcode: OP.BINARY, payload: z.subarray(0, h) }), buildFrame({ fin: true, opcode: OP.CONT, payload: z.subarray(h) })],
      1009,
    );
  });

  test('exactly --max-message inflated is accepted', async () => {
    const { c } = await rawOffer('permessage-deflate');
    try {
      const b = Buffer.alloc(MAX, 0x42);
      await c.sendRaw(buildFrame({ rsv: 4, opcode: OP.BINARY, payload: pmdCompress(b) }));
      const f = await readAnyFrame(c);
      assert.equal(f.rsv, 4);
      assert.ok(pmdInflate(f.payload).equals(b));
    } finally {
      c.destroy();
    }
  });

  test('RSV1 on a control frame, on a continuation, or without the extension: 1002', async () => {
    await expectRawClose([buildFrame({ rsv: 4, opcode: OP.PING, payload: 'x' })], 1002);
    await expectRawClose([buildFrame({ fin: false, rsv: 4, opcode: OP.TEXT, payload: pmdCompress(Buffer.from('ab')) }), buildFrame({ rsv: 4, opcode: OP.CONT, payload: pmdCompress(Buffer.from('cd')) })], 1002);
    await expectRawClose([buildFrame({ rsv: 4, opcode: OP.TEXT, payload: pmdCompress(Buffer.from('hello')) })], 1002, null);
    await expectRawClose([buildFrame({ rsv: 2, opcode: OP.TEXT, payload: 'x' })], 1002);
  });

  test('invalid UTF-8 inside compressed text: 1007; corrupt compressed data: 1007', async () => {
    await expectRawClose([buildFrame({ rsv: 4, opcode: OP.TEXT, payload: pmdCompress(Buffer.from([0x61, 0xff, 0x62])) })], 1007);
    await expectRawClose([buildFrame({ rsv: 4, opcode: OP.TEXT, payload: Buffer.from([0xff, 0xff, 0xff, 0xff]) })], 1007);
  });
});

describe('fan-out and threshold', () => {
  test('one send_to_all reaches 50 deflate and 50 plain clients, each with the right text', async () => {
    const deflated = [];
    const plain = [];
    for (let i = 0; i < 50; i++) deflated.push(await openDeflate(srv, '/ws', {}));
    for (let i = 0; i < 50; i++) plain.push(await openDeflate(srv, '/ws', false));
    const raw = await rawOffer('permessage-deflate', '/ws');
    try {
      assert.ok(deflated.every((c) => /permessage-deflate/.test(c.answer)));
      assert.ok(plain.every((c) => c.answer === undefined));
      await readAnyFrame(raw.c); // init
      const big = JSON.stringify({ type: 'news', body: 'a long announcement '.repeat(100) });
      const small = '{"type":"tiny"}';
      assert.ok((await call(srv, 'send_to_all', { data: big })) >= 101);
      assert.ok((await call(srv, 'send_to_all', { data: small })) >= 101);
      for (const c of [...deflated, ...plain]) {
        assert.equal(await c.nextText(), big);
        assert.equal(await c.nextText(), small);
      }
      const f1 = await readAnyFrame(raw.c);
      assert.equal(f1.rsv, 4, 'the big push arrives compressed');
      assert.ok(f1.payload.length < big.length / 5);
      assert.equal(pmdInflate(f1.payload).toString(), big);
      const f2 = await readAnyFrame(raw.c);
      assert.equal(f2.rsv, 0, 'under --ws-deflate-threshold: plain');
      assert.equal(f2.payload.toString(), small);
    } finally {
      for (const c of [...deflated, ...plain]) c.ws.terminate();
      raw.c.destroy();
    }
  });
});

describe('--ws-deflate off, and the threshold option', () => {
  test('off: an offer gets no extension, and RSV1 is a protocol error', async () => {
    const off = await startServer({ options: { 'echo-path': '/echo' } });
    try {
      const c = await openDeflate(off, '/echo', { threshold: 0 });
      assert.equal(c.answer, undefined);
      c.send('x'.repeat(2000));
      assert.equal(await c.nextText(), 'x'.repeat(2000));
      c.ws.terminate();
    } finally {
      await off.stop();
    }
  });

  test('--ws-deflate-threshold 0 compresses every message; a high one none', async () => {
    for (const [th, want] of [[0, 4], [100000, 0]]) {
      const s2 = await startServer({ options: { 'echo-path': '/echo', 'ws-deflate-threshold': th }, args: ['--ws-deflate'] });
      try {
        const c = await RawWs.connect(s2.port, { path: '/echo', headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate' } });
        const text = 'abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc'.repeat(20);
        await c.sendText(text);
        const f = await readAnyFrame(c);
        assert.equal(f.rsv, want, `threshold ${th}`);
        assert.equal((want ? pmdInflate(f.payload) : f.payload).toString(), text);
        c.destroy();
      } finally {
        await s2.stop();
      }
    }
  });
});
