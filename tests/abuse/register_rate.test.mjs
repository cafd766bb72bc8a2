// Attack: sign-ups from one address (every sign-up costs 64 MiB and ~100 ms
// of argon2id). --register-rate N allows N per hour per address: the (N+1)th
// is 429 rate_limited, while another address still signs up. A refused
// sign-up (400, 429) does not count.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../integration/lib/server.mjs';
import { fails, ok, post, uname } from '../integration/lib/chat.mjs';
import { startVictim, fmt } from './lib/victim.mjs';

const N = 3;
const srv = await startServer({ options: { 'register-rate': N } });
after(() => srv.stop());

const signup = (addr, body = {}) => post(srv, '/user/register', { username: uname('rr'), password: 'rate-password', ...body }, { localAddress: addr });

test(`--register-rate ${N}: the ${N + 1}th sign-up from one address is 429, another address still signs up`, async () => {
  // The victim signs up from 127.0.0.1, which the limit also counts.
  const victim = await startVictim(srv);
  const a = '127.0.6.1';
  fails(await signup(a, { password: 'x' }), 400, 'bad_field', 'password', 'a refused sign-up does not count');
  for (let i = 0; i < N; i++) ok(await signup(a), `sign-up ${i + 1} from ${a}`);
  for (let i = 0; i < 3; i++) {
    const r = fails(await signup(a), 429, 'rate_limited', undefined, `sign-up ${N + 1 + i} from ${a}`);
    assert.match(r.msg, /address/);
  }
  ok(await signup('127.0.6.2'), 'another address');
  const st = await victim.stop();
  console.log(fmt('victim during the sign-ups', st));
  assert.equal(st.lost, 0);
  assert.ok(st.p99 < 150, `victim p99 ${st.p99} ms`);
});
