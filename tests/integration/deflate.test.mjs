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
import { RawWs, WsClient, OP, buildFrame, parseServerFrame } from './lib/ws.mjs';

const MAX = 256 * 1024;
const SECRET = 'deflate-test-secret';
const srv = await startServer({
  options: { 'max-message': MAX, 'echo-path': '/echo', 'api-secret': SECRET },
  args: ['--ws-deflate'],
});
after(() => srv.stop());

/** Compresses as a permessage-deflate sender: raw deflate, sync flush, tail stripped. */
function pmdCompress(buf) {
  const z = zlib.deflateRawSync(buf, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.ok(z.subarray(-4).equals(Buffer.from([0, 0, 0xff, 0xff])));
  return z.subarray(0, -4);
}
const pmdInflate = (buf) => zlib.inflateRawSync(Buffer.concat([buf, Buffer.from([0, 0, 0xff, 0xff])]));

/** A raw handshake offering `ext`; returns {c, answer}. */
async function rawOffer(ext, path = '/echo') {
  const headers = ext === null ? {} : { 'Sec-WebSocket-Extensions': ext };
  const c = await RawWs.connect(srv.port, { path, headers });
  return { c, answer: c.response.headers['sec-websocket-extensions'] };
}

/** A ws client with perMessageDeflate options (false: none); c.answer is the server's Sec-WebSocket-Extensions. */
async function openDeflate(server, path, opts) {
  const ws = new WebSocket(server.wsUrl(path), { perMessageDeflate: opts, handshakeTimeout: 3000 });
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
    ['permessage-deflate', 'permessage-deflate; server_no_context_takeover'],
    ['permessage-deflate; client_max_window_bits', 'permessage-deflate; server_no_context_takeover'],
    ['permessage-deflate; client_max_window_bits=10', 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10'],
    ['permessage-deflate; client_max_window_bits="12"', 'permessage-deflate; server_no_context_takeover; client_max_window_bits=12'],
    ['permessage-deflate; client_no_context_takeover', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover'],
    ['permessage-deflate; server_max_window_bits=8', 'permessage-deflate; server_no_context_takeover; server_max_window_bits=8'],
    ['permessage-deflate; server_max_window_bits=15; client_no_context_takeover', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15'],
    // declined offers: the next one is taken
    ['permessage-deflate; server_max_window_bits, permessage-deflate', 'permessage-deflate; server_no_context_takeover'],
    ['permessage-deflate; server_max_window_bits=7, permessage-deflate; client_no_context_takeover', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10', 'permessage-deflate; server_no_context_takeover; server_max_window_bits=10'],
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
        let want = 'permessage-deflate; server_no_context_takeover';
        if (o.clientNoContextTakeover) want += '; client_no_context_takeover';
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
