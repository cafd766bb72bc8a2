// A bounded send load for the failure tests (a node killed, Redis restarted),
// and the end-of-test check of every recipient device: its pushes, then a
// cursor sync from the cursor its pushes gave it, hold every acknowledged
// message exactly once (merged by id, seq 1..N with no hole).
import assert from 'node:assert/strict';
import { http, sleep } from './cluster.mjs';
import { syncToEnd } from '../../integration/lib/multinode.mjs';

/**
 * Sends `count` messages from `from` to `to` over POST /chat/send,
 * `concurrency` at a time. pick(i, attempt) chooses the server of each
 * attempt. A send that fails (network error, non-200) is retried with the same
 * client_msg_id (stored at most once) up to maxAttempts times. onAck(nAcked)
 * runs after each acknowledgement (a test stops something part way).
 * Resolves with one record per message: {i, cmid, ok, message, node, attempts, errors}.
 */
export async function sendLoad({ from, to, count, concurrency = 4, pick, tag = 'L', maxAttempts = 40, onAck = () => {} }) {
  const out = new Array(count);
  let next = 0;
  let acked = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const cmid = `${tag}-${i}`;
      const rec = { i, cmid, ok: false, message: null, node: null, attempts: 0, errors: [] };
      out[i] = rec;
      for (let attempt = 0; attempt < maxAttempts && !rec.ok; attempt++) {
        rec.attempts++;
        const srv = pick(i, attempt);
        try {
          const r = await http(srv, 'POST', '/chat/send', { token: from.token, body: { to_id: to.id, type: 'text', data: `${tag} ${i}`, client_msg_id: cmid }, timeoutMs: 5000 });
          if (r.status === 200 && r.body?.status === true) {
            rec.ok = true;
            rec.message = r.body.data;
            rec.node = r.node;
          } else rec.errors.push(`${srv.label}: HTTP ${r.status} ${r.text.slice(0, 120)}`);
        } catch (e) {
          rec.errors.push(`${srv.label}: ${e.message}`);
        }
        if (!rec.ok) await sleep(50 + 50 * attempt);
      }
      if (rec.ok) await onAck(++acked, rec);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

/**
 * Checks one device of `user` in its conversation with `peer`, as the web
 * client catches up: the cursor is the highest seq up to which its pushes are
 * gapless; POST /chat/sync (on srv) from that cursor brings the rest. Asserts:
 * the sync answers only seq above the cursor, consecutively (syncToEnd); a
 * seq pushed and synced is one message; the merged view is seq 1..N with no
 * hole, N = expectTotal; every acknowledged message is in it with its id.
 * Returns {total, cursor, pushCount: Map id -> pushes received}.
 */
export async function checkDevice(sock, srv, user, peer, acked, { expectTotal } = {}) {
  const pushes = sock.pushed().filter((m) => (m.from_id === peer.id && m.to_id === user.id) || (m.from_id === user.id && m.to_id === peer.id));
  const pushCount = new Map();
  const bySeq = new Map();
  for (const m of pushes) {
    pushCount.set(m.id, (pushCount.get(m.id) ?? 0) + 1);
    const had = bySeq.get(m.seq);
    if (had) assert.equal(had.id, m.id, `${sock.name}: two pushed messages with seq ${m.seq} (ids ${had.id}, ${m.id})`);
    bySeq.set(m.seq, m);
  }
  let cursor = 0;
  while (bySeq.has(cursor + 1)) cursor++;
  const state = { cursors: { [String(peer.id)]: cursor } };
  await syncToEnd(srv, user, state);
  const synced = state.got.get(String(peer.id)) ?? [];
  for (const m of synced) {
    const had = bySeq.get(m.seq);
    if (had) assert.equal(had.id, m.id, `${sock.name}: seq ${m.seq} pushed as ${had.id} but synced as ${m.id}`);
    bySeq.set(m.seq, m);
  }
  const total = Math.max(0, ...bySeq.keys());
  for (let s = 1; s <= total; s++) assert.ok(bySeq.has(s), `${sock.name}: seq ${s} of ${total} missing after push + sync (cursor ${cursor})`);
  const ids = new Set([...bySeq.values()].map((m) => m.id));
  assert.equal(ids.size, total, `${sock.name}: ${total} distinct messages`);
  if (expectTotal !== undefined) assert.equal(total, expectTotal, `${sock.name}: messages in the conversation`);
  for (const rec of acked) {
    const m = bySeq.get(rec.message.seq);
    assert.ok(m && m.id === rec.message.id, `${sock.name}: acknowledged ${rec.cmid} (id ${rec.message.id}, seq ${rec.message.seq}) is there exactly once; found ${JSON.stringify(m)}`);
  }
  return { total, cursor, pushCount, synced: synced.length };
}

/**
 * Sends up to `count` messages over a bound socket, `window` in flight, until
 * the socket closes (a killed node). Resolves with one record per message
 * started: acknowledged ({ok: true, message, node: sock's node}) or left
 * without an answer when the socket closed ({ok: false}: maybe stored, maybe
 * not: the client retries it with its client_msg_id).
 */
export function socketLoad(sock, to, { count, window = 4, tag = 'S', node }) {
  return new Promise((resolve) => {
    const recs = [];
    const waiting = new Map();
    let next = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolve(recs);
    };
    const pump = () => {
      while (!sock.closeInfo && next < count && waiting.size < window) {
        const rec = { i: next, cmid: `${tag}-${next}`, ok: false, message: null, node: null, attempts: 1, errors: [], via: 'ws' };
        next++;
        recs.push(rec);
        waiting.set(rec.cmid, rec);
        sock.send({ type: 'send', message: { to_id: to.id, type: 'text', data: `${rec.cmid}`, client_msg_id: rec.cmid } });
      }
      if ((waiting.size === 0 && next >= count) || sock.closeInfo) finish();
    };
    sock.ws.on('message', (raw) => {
      let m;
      try {
        m = JSON.parse(raw.toString());
      } catch {
        return;
      }
      if ((m.type === 'ack' || m.type === 'error') && waiting.has(m.client_msg_id)) {
        const rec = waiting.get(m.client_msg_id);
        waiting.delete(m.client_msg_id);
        if (m.type === 'ack') {
          rec.ok = true;
          rec.message = m.message;
          rec.node = node;
        } else rec.errors.push(`ws error ${m.code}`);
        pump();
      }
    });
    sock.ws.on('close', () => {
      for (const rec of waiting.values()) rec.errors.push('socket closed before the answer');
      finish();
    });
    pump();
  });
}

/** Retries records that were not acknowledged over POST /chat/send (same client_msg_id) until each is. */
export async function retryOverHttp(recs, from, to, pick, { maxAttempts = 40 } = {}) {
  for (const rec of recs.filter((r) => !r.ok)) {
    for (let attempt = 0; attempt < maxAttempts && !rec.ok; attempt++) {
      rec.attempts++;
      const srv = pick(rec.i, attempt);
      try {
        const r = await http(srv, 'POST', '/chat/send', { token: from.token, body: { to_id: to.id, type: 'text', data: rec.cmid, client_msg_id: rec.cmid }, timeoutMs: 5000 });
        if (r.status === 200 && r.body?.status === true) {
          rec.ok = true;
          rec.message = r.body.data;
          rec.node = r.node;
        } else rec.errors.push(`${srv.label}: HTTP ${r.status}`);
      } catch (e) {
        rec.errors.push(`${srv.label}: ${e.message}`);
      }
      if (!rec.ok) await sleep(100);
    }
  }
  return recs;
}
