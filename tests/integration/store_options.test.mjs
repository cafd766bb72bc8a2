// --store and --store-connections, and what /healthz says of the store. Needs no database
// server: the PostgreSQL paths tested here are the ones that refuse to start (a bad option,
// an unreachable server, whose URI's password must not be printed). The PostgreSQL backend
// itself runs the whole chat suite when CHATD_TEST_STORE names a server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CHATD_BIN, HOST, startServer } from './lib/server.mjs';

function run(args, env = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATD_')));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-store-opt-'));
  try {
    return spawnSync(CHATD_BIN, ['--listen', `${HOST}:0`, '--data-dir', dataDir, ...args], {
      env: { ...clean, ...env },
      encoding: 'utf8',
      timeout: 10000,
    });
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

// A loopback port nothing listens on: connecting is refused at once.
async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, HOST, r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

test('--help documents --store and --store-connections with their env vars and defaults', () => {
  const r = spawnSync(CHATD_BIN, ['--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  assert.match(r.stdout, /--store\s.*PostgreSQL/);
  assert.match(r.stdout, /env CHATD_STORE, default 'sqlite'/);
  assert.match(r.stdout, /env CHATD_STORE_CONNECTIONS, default '4'/);
});

test('a --store that is neither sqlite nor a postgres URI, or one PostgreSQL connection, is refused', () => {
  for (const args of [['--store', 'mysql://x@y/z'], ['--store', ''], ['--store', 'postgres://u:p@127.0.0.1:1/d', '--store-connections', '1']]) {
    const r = run(args);
    assert.equal(r.status, 2, `chatd ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /--store/);
  }
  const r = run([], { CHATD_STORE: 'oracle' });
  assert.equal(r.status, 2, 'CHATD_STORE is read too');
});

test('an unreachable PostgreSQL server at start: exits 1 at once, saying why, without the password', async () => {
  const port = await closedPort();
  for (const scheme of ['postgres', 'postgresql']) {
    const t0 = Date.now();
    const r = run(['--store', `${scheme}://chatd:sup3rs3cret@${HOST}:${port}/chatd`]);
    assert.equal(r.status, 1, r.stderr);
    assert.ok(Date.now() - t0 < 8000, 'fails within the connect timeout');
    assert.match(r.stderr, /PostgreSQL/);
    assert.match(r.stderr, /refused|could not connect|connection/i);
    assert.ok(!r.stderr.includes('sup3rs3cret'), 'the password is not logged');
  }
});

test('/healthz reports the store as ok and names the backend', async () => {
  const srv = await startServer();
  // the harness may run every server on PostgreSQL (CHATD_TEST_STORE)
  const pg = /^postgres(ql)?:/.test(process.env.CHATD_TEST_STORE || '');
  try {
    const h = await (await fetch(`${srv.url}/healthz`)).json();
    assert.equal(h.data.store, 'ok');
    assert.equal(h.data.store_backend, pg ? 'postgresql' : 'sqlite');
  } finally {
    await srv.stop();
  }
});
