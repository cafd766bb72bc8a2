// Attack: anonymous {"type":"bind"} floods with made-up tokens (issue #13,
// item 4). Each token that is not cached costs a lookup on the one storage
// thread; unlimited, they pushed a chatting victim's send -> ack time from 13
// to 111 ms. Now: one bind in flight per socket, a socket is closed (1008)
// after 3 failed binds, and past --bind-rate failed binds a minute an address
// is refused without a lookup (rate_limited).
//
// Many sockets from two source addresses (127.0.0.2, 127.0.0.3) bind with
// random tokens, one after another, reconnecting when closed, next to a victim
// who sends chat messages (send -> ack) and one who pings.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { startServer } from '../integration/lib/server.mjs';
import { WsClient } from '../integration/lib/ws.mjs';
import { fmt, sleep, startVictim } from './lib/victim.mjs';
import { senderBaseline, startSender } from './lib/sender.mjs';

const BIND_RATE = 30;
const ADDRS = ['127.0.0.2', '127.0.0.3'];
const SOCKETS_PER_ADDR = 40; // attacking at once from each address
const CONNECTS_PER_SOCKET = 10; // each reconnects this many times, spread over the attack
const ATTACK_MS = 4000;

const srv = await startServer({ options: { 'bind-rate': BIND_RATE } });
after(() => srv.stop());

const token = () => crypto.randomBytes(32).toString('base64url');

/** Runs the attack from addr in a worker thread; resolves with its stats. */
function attackFrom(addr) {
  const w = new Worker(new URL('./lib/bind_attacker.mjs', import.meta.url), {
    workerData: { port: srv.port, addr, sockets: SOCKETS_PER_ADDR, connects: CONNECTS_PER_SOCKET, ms: ATTACK_MS },
  });
  return new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

test(`bind flood with random tokens from ${ADDRS.length} addresses: lookups bounded per address, sockets closed, victim unaffected`, async () => {
  const base = await senderBaseline(srv);
  console.log(fmt('victim send->ack, baseline', base));

  const sender = await startSender(srv);
  const pinger = await startVictim(srv);
  const results = await Promise.all(ADDRS.map(attackFrom));
  const stats = Object.fromEntries(ADDRS.map((a, i) => [a, results[i]]));
  const during = await sender.stop();
  const ping = await pinger.stop();
  console.log(fmt('victim send->ack, during the flood', during));
  console.log(fmt('victim ping, during the flood', ping));
  for (const a of ADDRS) console.log(`# ${a}: ${JSON.stringify(stats[a])}`);

  for (const a of ADDRS) {
    const st = stats[a];
    const lookups = st.codes.unauthorized || 0; // each unauthorized answer is one token lookup
    // At most --bind-rate failures a minute, plus the lookups already in flight when the
    // limit was reached (one per socket).
    assert.ok(lookups <= BIND_RATE + SOCKETS_PER_ADDR, `${a}: ${lookups} token lookups, bound ${BIND_RATE + SOCKETS_PER_ADDR}`);
    assert.ok(lookups >= BIND_RATE, `${a}: the first ${BIND_RATE} failures are answered normally (got ${lookups})`);
    assert.ok((st.codes.rate_limited || 0) > 0, `${a}: binds past the limit are refused as rate_limited`);
    assert.deepEqual(Object.keys(st.codes).sort(), ['rate_limited', 'unauthorized'].filter((k) => st.codes[k]), `${a}: only unauthorized and rate_limited answers`);
    // Every socket that got an answer was closed with 1008 after its third failure.
    const closed = st.closes['1008 too many failed binds'] || 0;
    assert.equal(closed, st.sockets, `${a}: every socket closed with 1008: ${JSON.stringify(st.closes)}`);
    assert.ok(st.sockets > SOCKETS_PER_ADDR, `${a}: sockets reconnected (${st.sockets})`);
  }

  assert.equal(during.lost, 0, 'no victim message lost');
  assert.ok(during.n > 50, `the victim kept sending (${during.n} messages)`);
  assert.ok(during.p99 < Math.max(100, base.p99 * 5), `victim send->ack p99 ${during.p99.toFixed(1)} ms (baseline ${base.p99.toFixed(1)} ms)`);
  assert.equal(ping.lost, 0, 'no victim ping lost');

  // The limit is per address: a fresh address still binds (and fails) normally.
  const other = await WsClient.open(srv, { wsOptions: { localAddress: '127.0.0.4' } });
  other.sendJson({ type: 'bind', token: token() });
  assert.equal((await other.nextJson()).code, 'unauthorized');
  other.terminate();
  // The limited address is refused at once, with no lookup, even with a real token.
  const refused = await WsClient.open(srv, { wsOptions: { localAddress: ADDRS[0] } });
  refused.sendJson({ type: 'bind', token: sender.user.token });
  const m = await refused.nextJson();
  assert.equal(m.code, 'rate_limited', JSON.stringify(m));
  refused.terminate();
});
