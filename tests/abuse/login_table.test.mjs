// Attack: login attempts with ever new usernames from several addresses, over
// keep-alive, to grow the login rate table (it used to be pruned by a full
// scan on every new key past 100k entries, stalling the loop). Now the address
// limit is checked before anything is recorded for a username, refused
// attempts record nothing, and eviction is O(1) (core/ratelimit). Asserts:
// every attempt past --login-rate per address is 429 quickly, the refused
// attempts created no username counter (checked by its effect), and the
// victim's ping p99 stays bounded.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer } from '../integration/lib/server.mjs';
import { register } from '../integration/lib/chat.mjs';
import { startVictim, fmt, summarize } from './lib/victim.mjs';

const RATE = 5;
const ADDRS = 8;
const PER_ADDR = 500;

const srv = await startServer({ options: { 'login-rate': RATE } });
after(() => srv.stop());

/** A keep-alive HTTP client bound to one source address. */
function client(localAddress) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    post(path, body) {
      const payload = JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        const r = http.request(
          { host: srv.host, port: srv.port, method: 'POST', path, agent, localAddress, timeout: 10000, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (text += d));
            res.on('end', () => {
              let parsed;
              try {
                parsed = JSON.parse(text);
              } catch {
                parsed = undefined;
              }
              resolve({ status: res.statusCode, body: parsed, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
            });
          },
        );
        r.on('timeout', () => r.destroy(new Error('timeout')));
        r.on('error', reject);
        r.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}

test(`${ADDRS * PER_ADDR} logins with distinct usernames from ${ADDRS} addresses: 429 past the address limit, nothing recorded, victim unaffected`, async () => {
  const victim = await startVictim(srv);
  const target = await register(srv, 'target' + Date.now().toString(36));
  const statuses = {};
  const refusedMs = [];
  let reqs = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: ADDRS }, async (_, a) => {
      const c = client(`127.0.3.${a + 1}`);
      try {
        for (let i = 0; i < PER_ADDR; i++) {
          const r = await c.post('/user/login', { username: `ghost-${a}-${i}-${t0}`, password: 'whatever1' });
          reqs++;
          statuses[r.status] = (statuses[r.status] || 0) + 1;
          if (i >= RATE) {
            assert.equal(r.status, 429, `attempt ${i + 1} from 127.0.3.${a + 1}`);
            assert.equal(r.body.code, 'rate_limited');
            assert.match(r.body.msg, /address/);
            refusedMs.push(r.ms);
          } else {
            assert.ok([401, 503].includes(r.status), `attempt ${i + 1}: ${r.status}`);
          }
        }
        // Refused attempts against a real account count for nothing: RATE + 2
        // more of them from this (limited) address...
        for (let i = 0; i < RATE + 2; i++) {
          const r = await c.post('/user/login', { username: target.username, password: 'wrong-password' });
          assert.equal(r.status, 429);
        }
      } finally {
        c.close();
      }
    }),
  );
  const elapsed = Date.now() - t0;
  const st = await victim.stop();
  console.log(fmt('victim during the login flood', st));
  const rs = summarize(refusedMs);
  console.log(`${reqs} login attempts in ${elapsed} ms, statuses ${JSON.stringify(statuses)}; refused ones: p50=${rs.p50.toFixed(2)} ms p99=${rs.p99.toFixed(2)} ms`);
  assert.equal(statuses[429], ADDRS * (PER_ADDR - RATE));
  // ...so the target has no failures on record: a fresh address may fail
  // against it and try again (were the refused attempts counted, the target
  // would be over RATE failures and this address, having failed, refused).
  const fresh = client('127.0.3.200');
  try {
    assert.equal((await fresh.post('/user/login', { username: target.username, password: 'wrong-password' })).status, 401);
    assert.equal((await fresh.post('/user/login', { username: target.username, password: 'wrong-password' })).status, 401);
    assert.equal((await fresh.post('/user/login', { username: target.username, password: target.password })).status, 200);
  } finally {
    fresh.close();
  }
  assert.ok(st.lost === 0, `victim lost ${st.lost} pings`);
  assert.ok(st.p99 < 150, `victim p99 ${st.p99} ms`);
  assert.ok(rs.p99 < 100, `refused logins p99 ${rs.p99} ms`);
});
