// WebSocket frames with a raw client: echo endpoint, ping/pong, fragmentation
// with interleaved control frames, the close handshake, protocol errors (1002),
// invalid UTF-8 (1007), oversized messages (1009), binary on /ws (1003), and
// disconnects in the middle of a frame.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep, waitFor } from './lib/server.mjs';
import { healthz } from './lib/http.mjs';
import { RawWs, WsClient, OP, buildFrame, closePayload, handshakeRequest } from './lib/ws.mjs';
import { RawConn } from './lib/http.mjs';

const MAX = 1024;
const srv = await startServer({ options: { 'max-message': MAX, 'echo-path': '/echo' } });
after(() => srv.stop());

const bystander = await WsClient.open(srv);
after(() => bystander.terminate());

const echo = () => RawWs.connect(srv.port, { path: '/echo' });

/** Sends frames on a fresh connection and expects the server to close with `code`. */
async function expectClose(path, frames, code, { timeoutMs = 2000 } = {}) {
  const c = await RawWs.connect(srv.port, { path });
  try {
    for (const f of frames) await c.sendRaw(Buffer.isBuffer(f) ? f : buildFrame(f));
    const r = await c.readClose(timeoutMs);
    assert.equal(r.code, code, `close code (reason ${JSON.stringify(r.reason)}, ${r.noCloseFrame ? 'TCP closed without a close frame' : 'close frame received'})`);
    assert.equal(r.tcpClosed, true, 'server closed TCP after the close frame');
    return r;
  } finally {
    c.destroy();
  }
}

describe('echo endpoint', () => {
  test('text comes back as text, binary as binary, with no init', async () => {
    const c = await echo();
    try {
      await c.sendText('héllo wörld 😀');
      let m = await c.readMessage();
      assert.equal(m.opcode, OP.TEXT, 'first message is the echo, not an init');
      assert.equal(m.text, 'héllo wörld 😀');
      const bin = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80]);
      await c.sendBinary(bin);
      m = await c.readMessage();
      assert.equal(m.opcode, OP.BINARY);
      assert.ok(m.data.equals(bin));
      await c.sendText('');
      m = await c.readMessage();
      assert.equal(m.opcode, OP.TEXT);
      assert.equal(m.text, '');
    } finally {
      c.destroy();
    }
  });

  test('16-bit lengths, exactly --max-message, non-minimal length encoding, zero mask key', async () => {
    const c = await echo();
    try {
      const t200 = 'x'.repeat(200);
      await c.sendText(t200);
      assert.equal((await c.readMessage()).text, t200);
      const tmax = 'm'.repeat(MAX);
      await c.sendText(tmax);
      assert.equal((await c.readMessage()).text, tmax);
      await c.send({ opcode: OP.TEXT, payload: 'short', lenBytes: 2 });
      assert.equal((await c.readMessage()).text, 'short');
      await c.send({ opcode: OP.TEXT, payload: 'short64', lenBytes: 8 });
      assert.equal((await c.readMessage()).text, 'short64');
      await c.send({ opcode: OP.TEXT, payload: 'zero mask', maskKey: Buffer.alloc(4) });
      assert.equal((await c.readMessage()).text, 'zero mask');
    } finally {
      c.destroy();
    }
  });

  test('a frame sent in the same write as the handshake is processed', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(Buffer.concat([Buffer.from(handshakeRequest({ path: '/echo' })), buildFrame({ opcode: OP.TEXT, payload: 'eager' })]));
      const res = await c.readResponse();
      assert.equal(res.status, 101);
      const ws = new RawWs(c, res);
      const m = await ws.readMessage();
      assert.equal(m.text, 'eager');
    } finally {
      c.destroy();
    }
  });

  test('binary is not checked for UTF-8', async () => {
    const c = await echo();
    try {
      const bin = Buffer.from([0xff, 0xc0, 0xaf, 0xed, 0xa0, 0x80]);
      await c.sendBinary(bin);
      const m = await c.readMessage();
      assert.equal(m.opcode, OP.BINARY);
      assert.ok(m.data.equals(bin));
    } finally {
      c.destroy();
    }
  });

  test('the ws package round-trips text and binary on /echo', async () => {
    const c = await WsClient.open(srv, { path: '/echo' });
    try {
      c.send('from ws');
      assert.equal(await c.nextText(), 'from ws');
      c.send(Buffer.from([9, 8, 7]), { binary: true });
      const m = await c.next();
      assert.equal(m.isBinary, true);
      assert.deepEqual([...m.data], [9, 8, 7]);
    } finally {
      await c.close();
    }
  });
});

describe('ping and pong', () => {
  test('a ping is answered with a pong carrying the same payload', async () => {
    for (const path of ['/echo', '/ws']) {
      const c = await RawWs.connect(srv.port, { path });
      try {
        for (const payload of [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(125, 0x61)]) {
          await c.ping(payload);
          let f;
          do f = await c.readFrame();
          while (f.opcode === OP.TEXT); // the init on /ws
          assert.equal(f.opcode, OP.PONG, `pong on ${path}`);
          assert.ok(f.payload.equals(payload), `pong payload on ${path}`);
        }
      } finally {
        c.destroy();
      }
    }
  });

  test('an unsolicited pong is ignored', async () => {
    const c = await echo();
    try {
      await c.send({ opcode: OP.PONG, payload: 'unsolicited' });
      await c.sendText('after pong');
      const f = await c.readFrame();
      assert.equal(f.opcode, OP.TEXT);
      assert.equal(f.payload.toString(), 'after pong');
    } finally {
      c.destroy();
    }
  });

  test('the text {"type":"ping"} on /ws is answered with {"type":"pong"}', async () => {
    const c = await RawWs.connectClient(srv.port);
    try {
      await c.sendText('{"type":"ping"}');
      const m = await c.readMessage();
      assert.deepEqual(JSON.parse(m.text), { type: 'pong' });
    } finally {
      c.destroy();
    }
  });
});

describe('fragmentation', () => {
  test('fragments with interleaved pings: pongs first, then the whole message', async () => {
    const c = await echo();
    try {
      await c.send({ opcode: OP.TEXT, fin: false, payload: 'Hel' });
      await c.ping('p1');
      await c.send({ opcode: OP.CONT, fin: false, payload: 'lo ' });
      await c.ping('p2');
      await c.send({ opcode: OP.CONT, fin: true, payload: 'World' });
      const f1 = await c.readFrame();
      assert.equal(f1.opcode, OP.PONG);
      assert.equal(f1.payload.toString(), 'p1');
      const f2 = await c.readFrame();
      assert.equal(f2.opcode, OP.PONG);
      assert.equal(f2.payload.toString(), 'p2');
      const m = await c.readMessage();
      assert.equal(m.opcode, OP.TEXT);
      assert.equal(m.text, 'Hello World');
    } finally {
      c.destroy();
    }
  });

  test('a pong between fragments is allowed too', async () => {
    const c = await echo();
    try {
      await c.send({ opcode: OP.BINARY, fin: false, payload: Buffer.from([1, 2]) });
      await c.send({ opcode: OP.PONG, payload: 'x' });
      await c.send({ opcode: OP.CONT, fin: true, payload: Buffer.from([3]) });
      const m = await c.readMessage();
      assert.equal(m.opcode, OP.BINARY);
      assert.deepEqual([...m.data], [1, 2, 3]);
    } finally {
      c.destroy();
    }
  });

  test('a UTF-8 character split across three fragments is valid', async () => {
    const c = await echo();
    try {
      await c.send({ opcode: OP.TEXT, fin: false, payload: Buffer.from([0xe2]) });
      await c.send({ opcode: OP.CONT, fin: false, payload: Buffer.from([0x82]) });
      await c.send({ opcode: OP.CONT, fin: true, payload: Buffer.from([0xac]) });
      assert.equal((await c.readMessage()).text, '€');
    } finally {
      c.destroy();
    }
  });

  test('many small fragments adding up to exactly --max-message are accepted', async () => {
    const c = await echo();
    try {
      const n = MAX / 64;
      for (let i = 0; i < n; i++) {
        await c.send({ opcode: i === 0 ? OP.TEXT : OP.CONT, fin: i === n - 1, payload: 'abcdefgh'.repeat(8) });
      }
      const m = await c.readMessage();
      assert.equal(m.text, 'abcdefgh'.repeat(8 * n));
    } finally {
      c.destroy();
    }
  });

  test('frames split into single bytes on the wire are reassembled', async () => {
    const c = await echo();
    try {
      const bytes = Buffer.concat([
        buildFrame({ opcode: OP.TEXT, fin: false, payload: 'split ' }),
        buildFrame({ opcode: OP.PING, payload: 'pp' }),
        buildFrame({ opcode: OP.CONT, payload: 'bytes' }),
      ]);
      for (const b of bytes) {
        await c.sendRaw(Buffer.from([b]));
        await sleep(1);
      }
      const pong = await c.readFrame();
      assert.equal(pong.opcode, OP.PONG);
      assert.equal((await c.readMessage()).text, 'split bytes');
    } finally {
      c.destroy();
    }
  });
});

describe('close handshake', () => {
  test('a client close 1000 is echoed with 1000 and TCP is closed', async () => {
    const c = await echo();
    try {
      await c.sendClose(1000, 'bye');
      const r = await c.readClose(2000, { reply: false });
      assert.equal(r.code, 1000);
      assert.equal(r.tcpClosed, true);
    } finally {
      c.destroy();
    }
  });

  test('a client close on /ws is echoed too', async () => {
    const c = await RawWs.connectClient(srv.port);
    try {
      await c.sendClose(1000);
      const r = await c.readClose(2000, { reply: false });
      assert.equal(r.code, 1000);
      assert.equal(r.tcpClosed, true);
    } finally {
      c.destroy();
    }
  });

  for (const code of [1001, 1003, 1007, 1011, 3000, 4999]) {
    test(`a valid close code ${code} is answered with a close (its code or 1000)`, async () => {
      const c = await echo();
      try {
        await c.sendClose(code, 'reason');
        const r = await c.readClose(2000, { reply: false });
        assert.ok(r.code === code || r.code === 1000, `answered close code ${r.code}`);
        assert.equal(r.tcpClosed, true);
      } finally {
        c.destroy();
      }
    });
  }

  test('an empty close payload is answered with a close (no code, or 1000)', async () => {
    const c = await echo();
    try {
      await c.send({ opcode: OP.CLOSE });
      const r = await c.readClose(2000, { reply: false });
      assert.equal(r.noCloseFrame, undefined, 'a close frame was sent');
      assert.ok(r.code === null || r.code === 1000, `code ${r.code}`);
      assert.equal(r.tcpClosed, true);
    } finally {
      c.destroy();
    }
  });

  test('a close reason of 123 bytes (125-byte payload) is fine', async () => {
    const c = await echo();
    try {
      await c.sendClose(1000, 'r'.repeat(123));
      const r = await c.readClose(2000, { reply: false });
      assert.equal(r.code, 1000);
    } finally {
      c.destroy();
    }
  });

  test('the ws package sees a clean 1000 close', async () => {
    const c = await WsClient.open(srv);
    const info = await c.close(1000);
    assert.equal(info.code, 1000);
  });
});

describe('protocol errors close with 1002', () => {
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
    test(`close code ${code}`, () => expectClose('/echo', [{ opcode: OP.CLOSE, payload: closePayload(code) }], 1002));
  }
  test('a 1-byte close payload', () => expectClose('/echo', [{ opcode: OP.CLOSE, payload: Buffer.from([0x03]) }], 1002));
  test('a close payload of 126 bytes', () =>
    expectClose('/echo', [{ opcode: OP.CLOSE, payload: closePayload(1000, 'r'.repeat(124)) }], 1002));

  test('an unmasked frame on /echo', () => expectClose('/echo', [{ opcode: OP.TEXT, payload: 'hi', mask: false }], 1002));
  test('an unmasked frame on /ws', () => expectClose('/ws', [{ opcode: OP.TEXT, payload: '{"type":"ping"}', mask: false }], 1002));
  test('an unmasked ping', () => expectClose('/echo', [{ opcode: OP.PING, payload: 'x', mask: false }], 1002));

  for (const rsv of [4, 2, 1, 7]) {
    test(`RSV bits ${rsv.toString(2).padStart(3, '0')} on a text frame`, () =>
      expectClose('/echo', [{ opcode: OP.TEXT, payload: 'hi', rsv }], 1002));
  }
  test('RSV1 on a ping', () => expectClose('/echo', [{ opcode: OP.PING, payload: 'x', rsv: 4 }], 1002));
  test('RSV1 on a /ws text frame', () => expectClose('/ws', [{ opcode: OP.TEXT, payload: '{"type":"ping"}', rsv: 4 }], 1002));

  for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    test(`opcode 0x${opcode.toString(16)}`, () => expectClose('/echo', [{ opcode, payload: 'x' }], 1002));
  }

  test('a fragmented ping', () => expectClose('/echo', [{ opcode: OP.PING, fin: false, payload: 'x' }], 1002));
  test('a ping of 126 bytes', () => expectClose('/echo', [{ opcode: OP.PING, payload: Buffer.alloc(126, 0x62) }], 1002));
  test('a continuation without a message', () => expectClose('/echo', [{ opcode: OP.CONT, payload: 'x' }], 1002));
  test('a continuation after a complete message', async () => {
    const c = await echo();
    try {
      await c.sendText('complete');
      assert.equal((await c.readMessage()).text, 'complete');
      await c.send({ opcode: OP.CONT, payload: 'x' });
      const r = await c.readClose();
      assert.equal(r.code, 1002);
    } finally {
      c.destroy();
    }
  });
  test('a new text message inside a fragmented one', () =>
    expectClose('/echo', [{ opcode: OP.TEXT, fin: false, payload: 'a' }, { opcode: OP.TEXT, payload: 'b' }], 1002));
  test('a new binary message inside a fragmented text', () =>
    expectClose('/echo', [{ opcode: OP.TEXT, fin: false, payload: 'a' }, { opcode: OP.BINARY, payload: 'b' }], 1002));
  test('a 64-bit length with the top bit set (1002, or 1009 for the size)', async () => {
    const h = Buffer.from([0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4]);
    const c = await echo();
    try {
      await c.sendRaw(h);
      const r = await c.readClose();
      assert.ok(r.code === 1002 || r.code === 1009, `close code ${r.code}`);
    } finally {
      c.destroy();
    }
  });
});

describe('invalid UTF-8 closes with 1007', () => {
  const bad = {
    'a lone 0xff': [0xff],
    'an overlong "/" (c0 af)': [0xc0, 0xaf],
    'an overlong 3-byte form (e0 80 af)': [0xe0, 0x80, 0xaf],
    'a surrogate (ed a0 80)': [0xed, 0xa0, 0x80],
    'a code point above U+10FFFF (f4 90 80 80)': [0xf4, 0x90, 0x80, 0x80],
    'a lone continuation byte': [0x61, 0x62, 0x80],
    'a message ending inside a character': [0x61, 0xe2, 0x82],
  };
  for (const [name, bytes] of Object.entries(bad)) {
    test(name, () => expectClose('/echo', [{ opcode: OP.TEXT, payload: Buffer.from(bytes) }], 1007));
  }

  test('invalid across fragments (valid prefix, bad continuation in the next fragment)', () =>
    expectClose(
      '/echo',
      [
        { opcode: OP.TEXT, fin: false, payload: Buffer.from([0x61, 0x62, 0xe2, 0x82]) },
        { opcode: OP.CONT, fin: true, payload: Buffer.from([0x28]) },
      ],
      1007,
    ));

  test('a fragmented message whose last fragment ends inside a character', () =>
    expectClose(
      '/echo',
      [
        { opcode: OP.TEXT, fin: false, payload: 'ab' },
        { opcode: OP.CONT, fin: true, payload: Buffer.from([0xf0, 0x9f, 0x98]) },
      ],
      1007,
    ));

  test('checked as the bytes arrive: a bad first fragment closes before the message ends', () =>
    expectClose('/echo', [{ opcode: OP.TEXT, fin: false, payload: Buffer.from([0x61, 0xff]) }], 1007, { timeoutMs: 1500 }));

  test('invalid UTF-8 on /ws', () => expectClose('/ws', [{ opcode: OP.TEXT, payload: Buffer.from([0x7b, 0xff, 0x7d]) }], 1007));

  test('a close reason that is not UTF-8', () =>
    expectClose('/echo', [{ opcode: OP.CLOSE, payload: Buffer.concat([closePayload(1000), Buffer.from([0xff, 0xfe])]) }], 1007));
});

describe('oversized messages close with 1009', () => {
  test('one frame of --max-message + 1 bytes', () => expectClose('/echo', [{ opcode: OP.TEXT, payload: 'z'.repeat(MAX + 1) }], 1009));
  test('binary frame of --max-message + 1 bytes', () =>
    expectClose('/echo', [{ opcode: OP.BINARY, payload: Buffer.alloc(MAX + 1) }], 1009));
  test('fragments adding up to more than --max-message', () =>
    expectClose(
      '/echo',
      [
        { opcode: OP.TEXT, fin: false, payload: 'a'.repeat(600) },
        { opcode: OP.CONT, fin: false, payload: 'b'.repeat(300) },
        { opcode: OP.CONT, fin: true, payload: 'c'.repeat(200) },
      ],
      1009,
    ));
  test('a header announcing 1 MB is refused at once, without waiting for the payload', () =>
    expectClose('/echo', [buildFrame({ opcode: OP.BINARY, len: 1_000_000, payload: Buffer.alloc(0) })], 1009, { timeoutMs: 1500 }));
  test('on /ws too', () => expectClose('/ws', [{ opcode: OP.TEXT, payload: 'z'.repeat(MAX + 1) }], 1009));
});

describe('/ws specifics', () => {
  test('a binary message on /ws is refused with 1003', () => expectClose('/ws', [{ opcode: OP.BINARY, payload: Buffer.from([1, 2, 3]) }], 1003));
});

describe('disconnects in the middle of things', () => {
  test('the server cleans up and keeps serving', async () => {
    const base = await healthz(srv);
    const conns = [];
    // Mid frame header, mid payload, mid fragmented message, mid handshake; FIN and RST.
    const plans = [
      async (c) => c.sendRaw(Buffer.from([0x81])),
      async (c) => c.sendRaw(buildFrame({ opcode: OP.TEXT, payload: 'x'.repeat(100) }).subarray(0, 20)),
      async (c) => c.sendRaw(buildFrame({ opcode: OP.TEXT, payload: 'x'.repeat(500) }).subarray(0, 300)),
      async (c) => {
        await c.send({ opcode: OP.TEXT, fin: false, payload: 'part one' });
        await c.sendRaw(buildFrame({ opcode: OP.CONT, payload: 'part two' }).subarray(0, 9));
      },
      async (c) => c.sendRaw(buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000, 'bye') }).subarray(0, 5)),
    ];
    for (const path of ['/ws', '/echo']) {
      for (const plan of plans) {
        for (const how of ['end', 'reset']) {
          const c = path === '/ws' ? await RawWs.connectClient(srv.port) : await RawWs.connect(srv.port, { path });
          await plan(c);
          conns.push([c, how]);
        }
      }
    }
    // Mid handshake.
    for (const how of ['end', 'reset']) {
      const raw = await RawConn.connect(srv.port);
      await raw.write(handshakeRequest().slice(0, 40));
      conns.push([{ conn: raw }, how]);
    }
    const during = await healthz(srv);
    assert.equal(during.clients, base.clients + 10, `clients while the half-sent connections are open: ${JSON.stringify(during)}`);
    await sleep(50);
    for (const [c, how] of conns) {
      if (how === 'reset') c.conn.reset();
      else c.conn.socket.end();
    }
    const h = await waitFor(async () => {
      const x = await healthz(srv);
      return x.clients === base.clients && x.connections <= base.connections ? x : null;
    }, { timeoutMs: 3000 });
    assert.ok(h, `counts back to ${JSON.stringify(base)}: now ${JSON.stringify(await healthz(srv))}`);
    for (const [c] of conns) c.conn.destroy();

    // Everything still works.
    const e = await echo();
    await e.sendText('still alive');
    assert.equal((await e.readMessage()).text, 'still alive');
    e.destroy();
    await bystander.pingPong();
    bystander.sendJson({ type: 'ping' });
    assert.deepEqual(await bystander.nextJson(), { type: 'pong' });
  });
});

test('the bystander was never disturbed', async () => {
  assert.equal(bystander.closeInfo, null);
  await bystander.pingPong();
});
