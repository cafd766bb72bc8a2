// Directory churn: sockets on three nodes bind to a few uids and join a few
// groups, then close or leave, round after round, with no pause between (a
// node gives up a uid's channel and takes it again at once). Afterwards the
// directory is exact: pushes to every uid and group reach the sockets that
// hold them exactly once, from every node; and when everything is closed the
// counts are 0 from every node, and Redis holds no directory entry and no
// subscription for those names.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, gw, uname, waitUntil } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';

const run = promisify(execFile);
const ROUNDS = 4;
const PER_NODE = 8;
const UIDS = 4;
const GROUPS = 3;

const c = await startCluster(after, { n: 3, haproxy: false });
const socks = [];
after(() => socks.forEach((s) => s.terminate()));
const tag = uname('ch');
const uidOf = (i) => `${tag}-u${i % UIDS}`;
const groupOf = (i) => `${tag}-g${i % GROUPS}`;

async function redis(...args) {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(c.redis.port), ...args], { timeout: 5000 });
  return stdout.trim();
}

test('bind, join, leave and close in quick rounds on three nodes: the directory stays exact', async () => {
  for (let round = 0; round < ROUNDS; round++) {
    const opened = [];
    await Promise.all(
      c.nodes.flatMap((node, k) =>
        Array.from({ length: PER_NODE }, async (_, j) => {
          const s = await Sock.open(node, `r${round}-${node.nodeId}-${j}`);
          opened.push(s);
          socks.push(s);
          const i = k * PER_NODE + j;
          const via = c.nodes[(i + round) % 3];
          await gw(via, 'bind_uid', { client_id: s.clientId, uid: uidOf(i + round) });
          await gw(via, 'join_group', { client_id: s.clientId, group: groupOf(i + round) });
        }),
      ),
    );
    // half leave their group and unbind, half just close; then the rest close
    await Promise.all(
      opened.map(async (s, i) => {
        const via = c.nodes[i % 3];
        if (i % 2) {
          await gw(via, 'leave_group', { client_id: s.clientId, group: groupOf(i + round) }).catch(() => {});
          s.terminate();
        } else s.terminate();
      }),
    );
  }
  // the last round's names again, held by one socket per uid and per group, on changing nodes
  const holders = [];
  for (let i = 0; i < Math.max(UIDS, GROUPS); i++) {
    const node = c.nodes[i % 3];
    const s = await Sock.open(node, `keep-${i}@${node.nodeId}`);
    socks.push(s);
    if (i < UIDS) await gw(c.nodes[(i + 1) % 3], 'bind_uid', { client_id: s.clientId, uid: uidOf(i) });
    if (i < GROUPS) await gw(c.nodes[(i + 2) % 3], 'join_group', { client_id: s.clientId, group: groupOf(i) });
    holders.push(s);
  }
  let last = null;
  await waitUntil(async () => {
    last = await Promise.all(c.nodes.map((node) => gw(node, 'get_all_client_id_count')));
    return last.every((n) => n === holders.length);
  }, { timeoutMs: 3000, what: 'the closed sockets to leave the counts' }).catch((e) => {
    throw new Error(`${e.message}; counts per node ${JSON.stringify(last)}, want ${holders.length}`);
  });
  for (const node of c.nodes) {
    for (let i = 0; i < UIDS; i++) {
      assert.deepEqual(await gw(node, 'get_client_id_by_uid', { uid: uidOf(i) }), [holders[i].clientId], `${uidOf(i)} from ${node.nodeId}`);
      assert.equal(await gw(node, 'send_to_uid', { uid: uidOf(i), data: `u${i}-from-${node.nodeId}` }), 1, `send_to_uid ${uidOf(i)} from ${node.nodeId}`);
    }
    for (let g = 0; g < GROUPS; g++) {
      assert.equal(await gw(node, 'get_client_id_count_by_group', { group: groupOf(g) }), 1, `${groupOf(g)} from ${node.nodeId}`);
      assert.equal(await gw(node, 'send_to_group', { group: groupOf(g), data: `g${g}-from-${node.nodeId}` }), 1);
    }
  }
  for (let i = 0; i < holders.length; i++) {
    for (const node of c.nodes) {
      if (i < UIDS) await holders[i].waitText(`u${i}-from-${node.nodeId}`, 1, 3000);
      if (i < GROUPS) await holders[i].waitText(`g${i}-from-${node.nodeId}`, 1, 3000);
    }
  }
  await settle();
  for (let i = 0; i < holders.length; i++) {
    const got = holders[i].texts.filter((t, k) => holders[i].frames[k].type !== 'init');
    assert.equal(got.length, new Set(got).size, `${holders[i].name}: every push once: ${got}`);
  }

  // (the Redis view the end of this test checks: entries and subscriptions exist now)
  for (let i = 0; i < UIDS; i++) {
    assert.notEqual(await redis('SMEMBERS', `chatd:uid:${uidOf(i)}`), '', `directory set of ${uidOf(i)} in Redis`);
    assert.equal((await redis('PUBSUB', 'NUMSUB', `chatd:u:${uidOf(i)}`)).split('\n').pop(), '1', `one node subscribed to ${uidOf(i)}`);
  }

  // everything closed: nothing left anywhere
  holders.forEach((s) => s.terminate());
  await waitUntil(async () => (await Promise.all(c.nodes.map((node) => gw(node, 'get_all_client_id_count')))).every((n) => n === 0), { timeoutMs: 3000, what: 'counts 0 on every node' });
  let leftovers = null;
  await waitUntil(async () => {
    leftovers = [];
    for (let i = 0; i < UIDS; i++) {
      const members = await redis('SMEMBERS', `chatd:uid:${uidOf(i)}`);
      const subs = (await redis('PUBSUB', 'NUMSUB', `chatd:u:${uidOf(i)}`)).split('\n').pop();
      if (members !== '' || subs !== '0') leftovers.push({ uid: uidOf(i), members, subs });
    }
    for (let g = 0; g < GROUPS; g++) {
      const members = await redis('SMEMBERS', `chatd:group:${groupOf(g)}`);
      const subs = (await redis('PUBSUB', 'NUMSUB', `chatd:g:${groupOf(g)}`)).split('\n').pop();
      if (members !== '' || subs !== '0') leftovers.push({ group: groupOf(g), members, subs });
    }
    return leftovers.length === 0;
  }, { timeoutMs: 5000, intervalMs: 200, what: 'no directory entry or subscription left in Redis' }).catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(leftovers)}`);
  });
  for (const node of c.nodes) {
    assert.equal(await gw(node, 'get_all_uid_count'), 0);
    for (let i = 0; i < UIDS; i++) assert.equal(await gw(node, 'is_uid_online', { uid: uidOf(i) }), false);
  }
});
