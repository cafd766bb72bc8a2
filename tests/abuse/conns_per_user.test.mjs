// Attack: one user binds a pile of sockets so that every message to them is
// copied to each (issue #13, item 5: 3,000 bound sockets of one user took a
// victim's send -> ack from 12 to 309 ms). Now --max-conns-per-user caps a
// user's bound sockets: past it a bind is refused (too_many_connections) and
// the socket closed with 1008, so a message to that user costs at most that
// many copies.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../integration/lib/server.mjs';
import { api } from '../integration/lib/http.mjs';
import { ChatSocket, must, register, uname } from '../integration/lib/chat.mjs';
import { fmt, sleep } from './lib/victim.mjs';
import { senderBaseline, startSender } from './lib/sender.mjs';

const CAP = 5;
const SOCKETS = 200; // the attacker's sockets
const MESSAGES = 400; // at most, sent to the attacker's user while the victim chats
const ATTACK_MS = 2000;
const PACE_MS = 5;
const SECRET = 'abuse-secret-0123456789';

const srv = await startServer({ options: { 'max-conns-per-user': CAP, 'api-secret': SECRET } });
srv.secret = SECRET;
after(() => srv.stop());

test(`--max-conns-per-user ${CAP}: the ${CAP + 1}th bind is refused, a message costs ${CAP} copies, the victim is unaffected`, async () => {
  const base = await senderBaseline(srv);
  console.log(fmt('victim send->ack, baseline', base));

  const hoarder = await register(srv, uname('hoard'));
  const spammer = await register(srv, uname('spam'));
  // The hoarder opens its sockets and binds them all at once.
  const socks = await Promise.all(Array.from({ length: SOCKETS }, () => ChatSocket.open(srv)));
  for (const s of socks) s.sendJson({ type: 'bind', token: hoarder.token });
  const answers = await Promise.all(socks.map((s) => s.next()));
  const bound = socks.filter((s, i) => answers[i].type === 'bind');
  const refused = socks.filter((s, i) => answers[i].type !== 'bind');

  // Messages to the hoarder, paced, while the victim chats.
  const victim = await startSender(srv);
  const data = 'x'.repeat(1024);
  let sent = 0;
  const deadline = Date.now() + ATTACK_MS;
  const worker = async () => {
    while (Date.now() < deadline && sent < MESSAGES) {
      sent++;
      await must(srv, 'POST', '/chat/send', { token: spammer.token, body: { to_id: hoarder.id, type: 'text', data } });
      await sleep(PACE_MS);
    }
  };
  await Promise.all(Array.from({ length: 2 }, worker));
  const during = await victim.stop();
  const copies = (await api(srv, 'send_to_uid', { uid: hoarder.id, data: { type: 'count' } })).body.data;
  console.log(fmt(`victim send->ack, ${sent} messages to a user who tried ${SOCKETS} sockets (cap ${CAP})`, during));
  console.log(`# bound ${bound.length} of ${SOCKETS} sockets; a push to the hoarder reached ${copies} sockets`);

  assert.equal(bound.length, CAP, 'exactly the cap is bound');
  assert.equal(refused.length, SOCKETS - CAP);
  for (const [i, m] of answers.entries()) {
    if (m.type === 'error') assert.equal(m.code, 'too_many_connections', JSON.stringify(m));
    else assert.deepEqual(m, { type: 'bind', status: true, uid: hoarder.id }, `answer ${i}`);
  }
  const closes = await Promise.all(refused.map((s) => s.ws.closed));
  for (const c of closes) assert.deepEqual(c, { code: 1008, reason: 'too many connections for this user' });
  assert.equal(copies, CAP, `a push to the hoarder costs ${CAP} copies`);
  for (const s of bound) {
    const got = await s.collect();
    assert.equal(got.filter((m) => m.type === 'message').length, sent, 'each bound socket got every message');
  }
  assert.equal(during.lost, 0);
  assert.ok(during.n > 50, `the victim kept sending (${during.n})`);
  assert.ok(during.p99 < Math.max(100, base.p99 * 5), `victim send->ack p99 ${during.p99.toFixed(1)} ms (baseline ${base.p99.toFixed(1)} ms)`);
  for (const s of socks) s.terminate();
});
