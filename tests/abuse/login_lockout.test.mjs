// Attack: lock alice out by sending wrong passwords for her from many
// addresses (the per-username counter used to be shared, so anyone could
// refuse her own correct password). Policy (docs/SECURITY.md): failures count
// per username and per (username, address); once alice's username is over
// --login-rate failures in its minute, the addresses that failed against it
// are refused (429), while an address that has not failed, like alice's own,
// still gets through. Asserts both, and the victim's ping latency.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../integration/lib/server.mjs';
import { fails, ok, post, register, uname } from '../integration/lib/chat.mjs';
import { startVictim, fmt, sleep } from './lib/victim.mjs';

const RATE = 3;
const ATTACKERS = 24;
const TRIES = 4;
const WAVE = 4;

const srv = await startServer({ options: { 'login-rate': RATE } });
after(() => srv.stop());

/** Fixed one-minute windows start at a key's first event: keep the test inside one. */
async function awayFromWindowEdge() {
  const left = 60000 - (Date.now() % 60000);
  if (left < 15000) await sleep(left + 150);
}

test(`wrong passwords for alice from ${ATTACKERS} addresses: the attackers get 429, alice from a fresh address logs in`, async () => {
  const alice = await register(srv, uname('alice'));
  const victim = await startVictim(srv);
  await awayFromWindowEdge();
  const from = (a) => ({ localAddress: `127.0.4.${a}` });
  // Waves of WAVE attackers at once: fewer than the hashing queue, so no try
  // is refused as busy (503), which would spend the address's budget instead.
  const last = [];
  for (let w = 0; w < ATTACKERS; w += WAVE) {
    const wave = await Promise.all(
      Array.from({ length: WAVE }, async (_, j) => {
        const i = w + j;
        let r;
        for (let k = 0; k < TRIES; k++) {
          r = await post(srv, '/user/login', { username: alice.username, password: `guess-${i}-${k}` }, from(i + 1));
          assert.ok([401, 429].includes(r.status), `attacker ${i} try ${k}: ${r.status} ${r.text}`);
        }
        return r;
      }),
    );
    last.push(...wave);
  }
  // Every attacker address ends refused: it failed against alice, who is over the limit.
  for (const [i, r] of last.entries()) fails(r, 429, 'rate_limited', 'username', `attacker 127.0.4.${i + 1}, last try`);
  // Even an attacker that guessed right now is refused.
  fails(await post(srv, '/user/login', { username: alice.username, password: alice.password }, from(1)), 429, 'rate_limited', 'username');
  // Alice, from an address that has not failed against her, logs in.
  const t0 = Date.now();
  const data = ok(await post(srv, '/user/login', { username: alice.username, password: alice.password }, from(250)), 'alice from a fresh address');
  console.log(`alice's login during the lock-out attempt took ${Date.now() - t0} ms`);
  assert.equal(data.user.id, alice.id);
  // And again from the same address (a success does not count as a failure).
  ok(await post(srv, '/user/login', { username: alice.username, password: alice.password }, from(250)), 'alice again');
  const st = await victim.stop();
  console.log(fmt('victim during the lock-out attempt', st));
  assert.equal(st.lost, 0);
  assert.ok(st.p99 < 150, `victim p99 ${st.p99} ms`);
});
