// The data directory at start-up and under failure: a database or directory
// chatd cannot write refuses to start with the real cause (EROFS, EACCES),
// not "healthy" nor "in use by another chatd"; a lock held by another chatd
// is still reported as such; the database files are 0600 and a new data dir
// 0700 whatever the umask; a data dir writable by others is refused; and a
// 500 (a full disk) is logged with its cause.
//
// The tests run as root, which ignores file modes: a read-only bind mount
// stops root too (EROFS), and setpriv runs chatd as nobody for EACCES. A
// test that cannot set that up here skips and says why. All of it is about
// the SQLite store: skipped when CHATD_TEST_STORE is PostgreSQL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CHATD_BIN, HOST, freePort, sleep, sqliteOnly, startServer, waitFor } from './lib/server.mjs';
import { fails, ok, post, register, uname } from './lib/chat.mjs';

const NOBODY = 65534;

function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATD_')));
}

/** Runs chatd expecting it to exit at start; returns {status, stderr}. */
function startFails(dataDir, { asNobody = false } = {}) {
  const argv = ['--listen', `${HOST}:0`, '--data-dir', dataDir, '--web-root', dataDir];
  const cmd = asNobody ? 'setpriv' : CHATD_BIN;
  const args = asNobody ? [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', CHATD_BIN, ...argv] : argv;
  const r = spawnSync(cmd, args, { env: cleanEnv(), encoding: 'utf8', timeout: 5000 });
  assert.equal(r.signal, null, `chatd exited by itself, not by the 5 s timeout: ${r.stderr}`);
  return r;
}

/** A temp base (traversable by nobody) with a data dir holding a database. */
async function dataDirWithDb() {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'chatd-dd-'));
  await fsp.chmod(base, 0o711);
  const dir = path.join(base, 'data');
  const srv = await startServer({ options: { 'data-dir': dir } });
  await register(srv, uname('dd'));
  await srv.stop();
  assert.ok(fs.existsSync(path.join(dir, 'chatd.db')));
  return { base, dir };
}

function mount(args) {
  return spawnSync('mount', args, { encoding: 'utf8' });
}

/** Bind-mounts p over itself read-only; returns an error text or null. */
function roBind(p) {
  let r = mount(['--bind', p, p]);
  if (r.status !== 0) return `mount --bind: ${r.stderr.trim()}`;
  r = mount(['-o', 'remount,ro,bind', p]);
  if (r.status !== 0) {
    spawnSync('umount', [p]);
    return `remount ro: ${r.stderr.trim()}`;
  }
  return null;
}

const umount = (p) => spawnSync('umount', [p]);

test('a read-only data directory: refused at start with EROFS, not "in use by another chatd"', sqliteOnly('the SQLite files of the data dir'), async (t) => {
  const { base, dir } = await dataDirWithDb();
  t.after(() => fsp.rm(base, { recursive: true, force: true }));
  const why = roBind(dir);
  if (why) return t.skip(`cannot make a read-only mount here (${why})`);
  try {
    const r = startFails(dir);
    assert.notEqual(r.status, 0, 'exit status');
    assert.match(r.stderr, /Read-only file system/);
    assert.doesNotMatch(r.stderr, /another chatd/);
  } finally {
    umount(dir);
  }
});

test('a read-only chatd.db in a writable directory: refused at start with EROFS, not a 500 later', sqliteOnly('the SQLite database file'), async (t) => {
  const { base, dir } = await dataDirWithDb();
  t.after(() => fsp.rm(base, { recursive: true, force: true }));
  const db = path.join(dir, 'chatd.db');
  const why = roBind(db);
  if (why) return t.skip(`cannot make a read-only mount here (${why})`);
  try {
    const r = startFails(dir);
    assert.notEqual(r.status, 0, 'exit status');
    assert.match(r.stderr, /chatd\.db cannot be written: Read-only file system/);
  } finally {
    umount(db);
  }
});

const canSetpriv = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'true']).status === 0;

test('as a user who may not write them: chatd.db 0400 and a data dir 0500 are refused with EACCES', sqliteOnly('modes of the SQLite files'), async (t) => {
  if (!canSetpriv) return t.skip('setpriv cannot switch to uid 65534 here');
  const { base, dir } = await dataDirWithDb();
  t.after(() => fsp.rm(base, { recursive: true, force: true }));
  for (const f of await fsp.readdir(dir)) await fsp.chown(path.join(dir, f), NOBODY, NOBODY);
  await fsp.chown(dir, NOBODY, NOBODY);

  // First, that nobody can run chatd on it at all (or the refusals below prove nothing).
  const port = await freePort();
  const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', CHATD_BIN, '--listen', `${HOST}:${port}`, '--data-dir', dir], { env: cleanEnv(), stdio: 'ignore' });
  try {
    const up = await waitFor(() => fetch(`http://${HOST}:${port}/healthz`).then((r) => r.status === 200).catch(() => false), { timeoutMs: 5000 });
    assert.ok(up, 'nobody can run chatd on this data directory');
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));
  }

  await fsp.chmod(path.join(dir, 'chatd.db'), 0o400);
  let r = startFails(dir, { asNobody: true });
  assert.notEqual(r.status, 0, 'exit status');
  assert.match(r.stderr, /chatd\.db cannot be written: Permission denied/);

  await fsp.chmod(path.join(dir, 'chatd.db'), 0o600);
  await fsp.chmod(dir, 0o500);
  r = startFails(dir, { asNobody: true });
  assert.notEqual(r.status, 0, 'exit status');
  assert.match(r.stderr, /cannot be written: Permission denied/);
  assert.doesNotMatch(r.stderr, /another chatd/);
});

test('a second chatd on the same data directory: "in use by another chatd"', sqliteOnly('the data dir lock'), async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const r = startFails(srv.dataDir);
  assert.notEqual(r.status, 0, 'exit status');
  assert.match(r.stderr, /in use by another chatd/);
});

test('a data directory writable by group or others is refused; 0755 is fine', sqliteOnly('the data dir holds the SQLite store'), async (t) => {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'chatd-dd-'));
  t.after(() => fsp.rm(base, { recursive: true, force: true }));
  const dir = path.join(base, 'data');
  await fsp.mkdir(dir);
  for (const mode of [0o777, 0o770, 0o1777]) {
    await fsp.chmod(dir, mode);
    const r = startFails(dir);
    assert.notEqual(r.status, 0, `mode ${mode.toString(8)}: exit status`);
    assert.match(r.stderr, /writable by group or others/, `mode ${mode.toString(8)}`);
  }
  assert.ok(!fs.existsSync(path.join(dir, 'chatd.db')), 'nothing was created in it');
  await fsp.chmod(dir, 0o755);
  const srv = await startServer({ options: { 'data-dir': dir } });
  await srv.stop();
});

test('with umask 000: the data dir is created 0700, chatd.db, -wal, -shm and chatd.lock 0600', sqliteOnly('modes of the SQLite files'), async (t) => {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'chatd-dd-'));
  t.after(() => fsp.rm(base, { recursive: true, force: true }));
  const dir = path.join(base, 'new', 'data');
  const port = await freePort();
  const child = spawn('sh', ['-c', `umask 000; exec "$0" "$@"`, CHATD_BIN, '--listen', `${HOST}:${port}`, '--data-dir', dir], { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((r) => child.on('exit', r));
  try {
    const up = await waitFor(() => fetch(`http://${HOST}:${port}/healthz`).then((r) => r.status === 200).catch(() => false), { timeoutMs: 5000 });
    assert.ok(up, `chatd started: ${stderr}`);
    await register({ url: `http://${HOST}:${port}`, port, host: HOST }, uname('um'));
    const mode = (p) => fs.statSync(p).mode & 0o777;
    assert.equal(mode(dir).toString(8), '700', 'data dir');
    assert.equal(mode(path.dirname(dir)).toString(8), '700', 'its new parent');
    for (const f of ['chatd.db', 'chatd.db-wal', 'chatd.db-shm', 'chatd.lock']) {
      assert.equal(mode(path.join(dir, f)).toString(8), '600', f);
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  assert.doesNotMatch(stderr, /ERROR/);
});

test('a full disk: the 500 is logged with its cause', sqliteOnly('a full disk under the SQLite files'), async (t) => {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'chatd-dd-'));
  t.after(() => fsp.rm(base, { recursive: true, force: true }));
  const dir = path.join(base, 'data');
  await fsp.mkdir(dir, { mode: 0o700 });
  const m = mount(['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', dir]);
  if (m.status !== 0) return t.skip(`cannot mount a tmpfs here (${m.stderr.trim()})`);
  let srv;
  try {
    srv = await startServer({ options: { 'data-dir': dir, 'max-text': 60000 } });
    const [a, b] = [await register(srv, uname('fa')), await register(srv, uname('fb'))];
    // Leave about 100 KB free, then send until a write fails.
    const { bavail, bsize } = fs.statfsSync(dir);
    const fill = Math.max(0, bavail * bsize - 100 * 1024);
    await fsp.writeFile(path.join(dir, 'filler'), Buffer.alloc(fill));
    let failed = null;
    for (let i = 0; i < 40 && !failed; i++) {
      const r = await post(srv, '/chat/send', { to_id: b.id, type: 'text', data: 'x'.repeat(50000) }, { token: a.token });
      if (r.status !== 200) failed = r;
    }
    assert.ok(failed, 'a send failed once the disk was full');
    fails(failed, 500, 'internal');
    await waitFor(() => /answered 500/.test(srv.stderr()));
    assert.match(srv.stderr(), /ERROR .*\/chat\/send answered 500 internal/);
    assert.match(srv.stderr(), /ERROR store: .*(disk is full|disk I\/O error)/, 'the cause, from SQLite');
    // Space again: the next send works.
    await fsp.rm(path.join(dir, 'filler'));
    await sleep(50);
    ok(await post(srv, '/chat/send', { to_id: b.id, type: 'text', data: 'after' }, { token: a.token }));
  } finally {
    if (srv) await srv.stop();
    umount(dir);
  }
});
