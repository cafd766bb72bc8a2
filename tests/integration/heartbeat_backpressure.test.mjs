// Heartbeat (--ping-interval 1 --ping-timeout 2): the server pings silent
// connections and closes dead ones with 1001; any frame counts as life.
// Backpressure (--max-outbuf 65536): a reader too slow is closed with 1008
// while the others keep receiving.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep, staggered, waitFor } from './lib/server.mjs';
import { call, healthz } from './lib/http.mjs';
import { RawWs, WsClient, OP } from './lib/ws.mjs';

const SECRET = 'hb-secret';
const [hb, bp] = await Promise.all([
  startServer({ options: { 'api-secret': SECRET, 'ping-interval': 1, 'ping-timeout': 2, 'echo-path': '/echo' } }),
  startServer({ options: { 'api-secret': SECRET, 'max-outbuf': 65536 } }),
]);
hb.secret = SECRET;
bp.secret = SECRET;
after(() => Promise.all([hb.stop(), bp.stop()]));

describe('heartbeat', { concurrency: true }, () => {
  // Four clients started 250 ms apart, so a timer firing early for some phase
  // of the second is caught every time.
  test('a silent client is pinged after 1 s and closed with 1001 after 2 s of silence', async () => {
    const results = await staggered(4, 250, async () => {
      const t0 = Date.now();
      const c = await RawWs.connectClient(hb.port);
      try {
        const ping = await c.readFrame(3000);
        const tPing = Date.now() - t0;
        assert.equal(ping.opcode, OP.PING, 'the server pings');
        // We do not answer.
        const r = await c.readClose(4000, { reply: false });
        const tClose = Date.now() - t0;
        assert.equal(r.code, 1001, 'closed with 1001');
        assert.ok(r.skipped.every((f) => f.opcode === OP.PING), 'only pings before the close');
        assert.equal(r.tcpClosed, true);
        const gone = await waitFor(async () => (await call(hb, 'is_online', { client_id: c.clientId })) === false, { timeoutMs: 1000 });
        assert.ok(gone, 'is_online false within 1 s of the close');
        return { tPing, tClose };
      } finally {
        c.destroy();
      }
    });
    const pings = results.map((r) => r.tPing);
    const closes = results.map((r) => r.tClose);
    assert.ok(pings.every((t) => t >= 950 && t <= 2500), `pinged after 1 s of silence (interval 1 s): after ${pings.join(', ')} ms`);
    assert.ok(closes.every((t) => t >= 1950 && t <= 3800), `closed after 2 s of silence (timeout 2 s): after ${closes.join(', ')} ms`);
  });

  test('a client answering pings with pongs stays open', async () => {
    const c = await RawWs.connectClient(hb.port);
    try {
      const t0 = Date.now();
      let pings = 0;
      while (Date.now() - t0 < 4500) {
        let f;
        try {
          f = await c.readFrame(4600 - (Date.now() - t0));
        } catch (e) {
          if (/timed out/.test(e.message)) break;
          throw e;
        }
        assert.notEqual(f.opcode, OP.CLOSE, `closed with ${f.code} after ${Date.now() - t0} ms`);
        if (f.opcode === OP.PING) {
          pings++;
          await c.send({ opcode: OP.PONG, payload: f.payload });
        }
      }
      assert.ok(pings >= 2, `pinged ${pings} times in 4.5 s`);
      assert.equal(c.ended, false);
      assert.equal(await call(hb, 'is_online', { client_id: c.clientId }), true);
    } finally {
      c.destroy();
    }
  });

  test('the ws package (auto-pong) stays open', async () => {
    const c = await WsClient.open(hb);
    try {
      await sleep(4500);
      assert.equal(c.closeInfo, null, `closed: ${JSON.stringify(c.closeInfo)}`);
      assert.ok(c.pings >= 2, `pinged ${c.pings} times`);
      c.sendJson({ type: 'ping' });
      assert.deepEqual(await c.nextJson(), { type: 'pong' });
    } finally {
      c.terminate();
    }
  });

  test('a browser-style client sending {"type":"ping"} and never pong frames stays open', async () => {
    const c = await RawWs.connectClient(hb.port);
    try {
      const t0 = Date.now();
      let pongs = 0;
      while (Date.now() - t0 < 4500) {
        await c.sendText('{"type":"ping"}');
        const deadline = Date.now() + 700;
        // Read what arrives in the next 700 ms, never answering ping frames.
        while (Date.now() < deadline) {
          let f;
          try {
            f = await c.readFrame(deadline - Date.now());
          } catch (e) {
            if (/timed out/.test(e.message)) break;
            throw e;
          }
          assert.notEqual(f.opcode, OP.CLOSE, `closed with ${f.code} after ${Date.now() - t0} ms`);
          if (f.opcode === OP.TEXT) {
            assert.deepEqual(JSON.parse(f.payload.toString()), { type: 'pong' });
            pongs++;
          }
        }
      }
      assert.ok(pongs >= 5, `${pongs} pongs`);
      assert.equal(c.ended, false);
    } finally {
      c.destroy();
    }
  });

  test('a silent echo connection is closed with 1001 too', async () => {
    const dts = await staggered(4, 250, async () => {
      const t0 = Date.now();
      const c = await RawWs.connect(hb.port, { path: '/echo' });
      try {
        const r = await c.readClose(4500, { reply: false });
        assert.equal(r.code, 1001);
        return Date.now() - t0;
      } finally {
        c.destroy();
      }
    });
    assert.ok(dts.every((t) => t >= 1950 && t <= 3800), `closed after 2 s of silence: after ${dts.join(', ')} ms`);
  });
});

describe('slow reader', () => {
  test('a client that stops reading is closed with 1008; others keep receiving', async () => {
    const slow = await RawWs.connectClient(bp.port);
    const fast = await WsClient.open(bp);
    try {
      await call(bp, 'bind_uid', { client_id: slow.clientId, uid: 'slow' });
      await call(bp, 'bind_uid', { client_id: fast.clientId, uid: 'fast' });
      slow.conn.socket.pause(); // stop reading: the kernel buffers fill, then the server's queue grows

      const chunk = 'S'.repeat(60 * 1024); // each message below --max-outbuf on its own
      let sent = 0;
      let closedAfter = null;
      const t0 = Date.now();
      for (let i = 0; i < 2500; i++) {
        const n = await call(bp, 'send_to_uid', { uid: 'slow', data: chunk });
        if (n === 0) {
          closedAfter = i;
          break;
        }
        sent++;
        if (i % 20 === 0) {
          assert.equal(await call(bp, 'send_to_uid', { uid: 'fast', data: `fast-${i}` }), 1);
          assert.equal(await fast.nextText(3000), `fast-${i}`);
        }
      }
      assert.notEqual(closedAfter, null, `slow reader still online after ${sent} messages of 60 KiB (${Date.now() - t0} ms)`);

      // The fast client is untouched.
      assert.equal(fast.closeInfo, null);
      assert.equal(await call(bp, 'send_to_uid', { uid: 'fast', data: 'after' }), 1);
      assert.equal(await fast.nextText(), 'after');

      // Reading again, the slow client finds (after what the kernel held) a close 1008.
      slow.conn.socket.resume();
      const r = await slow.readClose(10000, { reply: false });
      assert.equal(r.noCloseFrame, undefined, `a close frame arrives after ${r.skipped.length} data frames`);
      assert.equal(r.code, 1008);
      for (const f of r.skipped) assert.ok([OP.TEXT, OP.CONT, OP.PING].includes(f.opcode));
      const gone = await waitFor(async () => (await call(bp, 'is_online', { client_id: slow.clientId })) === false, { timeoutMs: 1000 });
      assert.ok(gone, 'is_online false once the slow client is closed');
      assert.equal(await call(bp, 'is_uid_online', { uid: 'slow' }), false);

      const h = await waitFor(async () => ((await healthz(bp)).clients === 1 ? true : null));
      assert.ok(h, 'only the fast client remains');
    } finally {
      slow.destroy();
      fast.terminate();
    }
  });

  test('a slow reader that never reads again is dropped within 5 s (no trace left)', async () => {
    const slow = await RawWs.connectClient(bp.port);
    try {
      await call(bp, 'bind_uid', { client_id: slow.clientId, uid: 'stuck' });
      await call(bp, 'join_group', { client_id: slow.clientId, group: 'stuck-group' });
      slow.conn.socket.pause();
      const chunk = 'T'.repeat(60 * 1024);
      let refused = false;
      for (let i = 0; i < 2500 && !refused; i++) refused = (await call(bp, 'send_to_uid', { uid: 'stuck', data: chunk })) === 0;
      assert.ok(refused, 'the server stopped delivering to the stuck reader');
      const gone = await waitFor(async () => (await call(bp, 'is_online', { client_id: slow.clientId })) === false, { timeoutMs: 5000, intervalMs: 100 });
      assert.ok(gone, 'is_online false within 5 s while the client still does not read');
      assert.equal(await call(bp, 'is_uid_online', { uid: 'stuck' }), false);
      assert.equal(await call(bp, 'get_client_id_count_by_group', { group: 'stuck-group' }), 0);
    } finally {
      slow.destroy();
    }
  });

  test('a client that reads normally is never closed, though far more than --max-outbuf passes through', async () => {
    const c = await WsClient.open(bp);
    try {
      await call(bp, 'bind_uid', { client_id: c.clientId, uid: 'reader' });
      const chunk = 'R'.repeat(4000);
      const N = 300; // 1.2 MB in all, 18 x --max-outbuf
      for (let i = 0; i < N; i++) assert.equal(await call(bp, 'send_to_uid', { uid: 'reader', data: `${i}:${chunk}` }), 1);
      for (let i = 0; i < N; i++) assert.equal(await c.nextText(5000), `${i}:${chunk}`);
      assert.equal(c.closeInfo, null);
    } finally {
      c.terminate();
    }
  });
});
