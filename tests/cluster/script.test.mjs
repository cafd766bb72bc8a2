// scripts/cluster.sh as a user runs it: `start 2` brings up Redis,
// PostgreSQL, two chatd nodes and haproxy in a directory of this test, prints
// the public URL and writes env; consecutive requests on one keep-alive
// connection to that URL are answered by both nodes (no stickiness); the
// browser client and a WebSocket work through it; `start` again is a no-op;
// `status` reports; `stop` ends every process it started and removes the
// directory; `stop` again is a no-op.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CHATD_BIN, REPO_ROOT, http, sleep } from './lib/cluster.mjs';
import { Sock } from './lib/sock.mjs';

const run = promisify(execFile);
const script = path.join(REPO_ROOT, 'scripts', 'cluster.sh');
const dir = path.join(os.tmpdir(), `chatd-cluster-script-${process.pid}`);
const env = { ...process.env, CHATD_CLUSTER_DIR: dir, CHATD_BIN };
delete env.CHATD_NODE_ARGS;
delete env.CHATD_PUBLIC_PORT;
const sh = (...args) => run(script, args, { env, timeout: 180000 });
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const readEnv = () => Object.fromEntries(fs.readFileSync(path.join(dir, 'env'), 'utf8').trim().split('\n').map((l) => {
  const i = l.indexOf('=');
  return [l.slice(0, i), l.slice(i + 1).replace(/^'|'$/g, '')];
}));

// whatever happens, nothing of it outlives the test
after(() => sh('stop'));
process.on('exit', () => {
  if (fs.existsSync(dir)) spawnSync(script, ['stop'], { env, timeout: 60000 });
});

test('scripts/cluster.sh start 2 / status / stop', async () => {
  const { stdout } = await sh('start', '2');
  const url = stdout.trim().split('\n').pop();
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const e = readEnv();
  assert.equal(e.PUBLIC_URL, url);
  assert.equal(e.NODE_URLS.split(' ').length, 2);
  assert.match(e.REDIS_URL, /^redis:\/\/127\.0\.0\.1:\d+$/);
  assert.match(e.PG_URL, /^postgres:\/\//);
  const pids = ['haproxy.pid', 'node1.pid', 'node2.pid'].map((f) => Number(fs.readFileSync(path.join(dir, f), 'utf8')));
  const redisPid = Number(fs.readFileSync(path.join(dir, 'redis', 'pid'), 'utf8'));
  for (const p of [...pids, redisPid]) assert.ok(alive(p), `pid ${p} runs`);

  const lb = { url, wsUrl: (p) => `${url.replace('http', 'ws')}${p}` };
  const seen = [];
  for (let i = 0; i < 4; i++) {
    const r = await http(lb, 'GET', '/healthz');
    assert.equal(r.status, 200);
    seen.push(r.node);
  }
  assert.deepEqual([...new Set(seen)].sort(), ['node1', 'node2'], `consecutive requests through haproxy: ${seen}`);
  for (let i = 1; i < seen.length; i++) assert.notEqual(seen[i], seen[i - 1], `round robin per request: ${seen}`);
  const page = await http(lb, 'GET', '/');
  assert.equal(page.status, 200);
  assert.match(page.text, /<html|<!doctype/i, 'the browser client');
  const s = await Sock.open(lb, 'through-script');
  assert.match(s.clientId, /^[A-Za-z0-9_-]{24}$/);
  s.terminate();
  const gw = await http({ url: e.NODE_URLS.split(' ')[1] }, 'POST', '/gateway/get_all_client_id_count', { token: e.API_SECRET, body: {} });
  assert.equal(gw.status, 200, `the API secret of env works: ${gw.text}`);

  const again = await sh('start', '2');
  assert.equal(again.stdout.trim(), url, 'start on a running cluster prints its URL');
  assert.equal(Number(fs.readFileSync(path.join(dir, 'node1.pid'), 'utf8')), pids[1], 'and starts nothing new');
  const st = await sh('status');
  assert.match(st.stdout, /node2\s+pid \d+/);

  await sh('stop');
  await sleep(100);
  for (const p of [...pids, redisPid]) assert.ok(!alive(p), `pid ${p} stopped`);
  assert.ok(!fs.existsSync(dir), 'directory removed');
  await sh('stop');
});
