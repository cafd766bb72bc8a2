// Attack: tell which usernames exist from the login's timing (an unknown user
// used to be answered in 2 ms, a wrong password after 187 ms of argon2id).
// Now an unknown user (or an account without a password) is verified against
// a dummy argon2id hash. Asserts: the median unknown-user login takes at least
// 30% of the median known-user wrong-password login, and both are 401
// bad_credentials.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../integration/lib/server.mjs';
import { fails, post, register, uname } from '../integration/lib/chat.mjs';
import { startVictim, fmt } from './lib/victim.mjs';

const TRIES = 9;
const srv = await startServer({ options: { 'login-rate': 1000 } });
after(() => srv.stop());

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function timed(body) {
  const t0 = process.hrtime.bigint();
  const r = await post(srv, '/user/login', body);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  fails(r, 401, 'bad_credentials');
  return ms;
}

test('unknown-user and wrong-password logins take the same order of time', async () => {
  const alice = await register(srv, uname('alice'));
  const victim = await startVictim(srv);
  const known = [];
  const unknown = [];
  for (let i = 0; i < TRIES; i++) {
    // interleaved, so a slow moment of the machine hits both
    known.push(await timed({ username: alice.username, password: `wrong-${i}` }));
    unknown.push(await timed({ username: uname('nobody'), password: `wrong-${i}` }));
  }
  const st = await victim.stop();
  const k = median(known);
  const u = median(unknown);
  console.log(`known user, wrong password: median ${k.toFixed(1)} ms; unknown user: median ${u.toFixed(1)} ms (ratio ${(u / k).toFixed(2)})`);
  console.log(fmt('victim during the timing probe', st));
  assert.ok(u >= 0.3 * k, `unknown-user login ${u.toFixed(1)} ms is much faster than a wrong password ${k.toFixed(1)} ms: it tells the username does not exist`);
});
