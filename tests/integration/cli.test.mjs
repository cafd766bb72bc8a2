// Command line: --help lists every option with its env var, bad options exit
// non-zero, env vars configure the server, the command line wins over env.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CHATD_BIN, startServer, HOST } from './lib/server.mjs';
import { rawRequest } from './lib/http.mjs';
import { RawWs, OP } from './lib/ws.mjs';

const OPTIONS = [
  'listen', 'api-secret', 'ws-path', 'echo-path', 'web-root', 'cors-origins', 'ws-origins', 'max-header-size',
  'max-headers', 'max-body', 'max-message', 'max-outbuf', 'ping-interval', 'ping-timeout', 'header-timeout',
  'keepalive-timeout', 'event-rate', 'log-level', 'data-dir',
];

function run(args, env = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATD_')));
  return spawnSync(CHATD_BIN, args, { env: { ...clean, ...env }, encoding: 'utf8', timeout: 5000 });
}

test('--help exits 0 and lists every option with its env var', () => {
  const r = run(['--help']);
  assert.equal(r.status, 0, r.stderr);
  for (const o of OPTIONS) {
    assert.ok(r.stdout.includes(`--${o}`), `--help mentions --${o}`);
    const env = `CHATD_${o.toUpperCase().replace(/-/g, '_')}`;
    assert.ok(r.stdout.includes(env), `--help mentions ${env}`);
  }
});

test('an unknown option, a stray argument or a bad value exits non-zero', () => {
  for (const args of [['--no-such-option'], ['stray'], ['--max-message', 'lots'], ['--listen', 'nonsense'], ['--ping-interval', '5', '--ping-timeout', '5']]) {
    const r = run(args);
    assert.notEqual(r.status, 0, `chatd ${args.join(' ')} exited ${r.status}`);
    assert.equal(r.signal, null, `chatd ${args.join(' ')} was not killed by a signal/timeout`);
    assert.ok(r.stderr.length > 0, 'says why on stderr');
  }
  const r = run([], { CHATD_MAX_BODY: 'not-a-number' });
  assert.notEqual(r.status, 0, 'a bad env value exits non-zero');
});

test('a port already in use: exits non-zero', async () => {
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(0, HOST, r));
  const { port } = blocker.address();
  // A data dir of its own: /tmp is writable by all, which chatd refuses
  // before it gets to the port.
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-cli-'));
  try {
    const r = await new Promise((resolve) => {
      const res = spawnSync(CHATD_BIN, ['--listen', `${HOST}:${port}`, '--data-dir', dataDir, '--web-root', '/tmp'], {
        encoding: 'utf8',
        timeout: 5000,
        env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATD_'))),
      });
      resolve(res);
    });
    assert.notEqual(r.status, 0, `exit status ${r.status}`);
    assert.equal(r.signal, null, 'exited by itself, not by the 5 s timeout');
    assert.match(r.stderr, /in use|EADDRINUSE/i, 'for the port, not for anything else');
  } finally {
    blocker.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('options from the environment: CHATD_WS_PATH and CHATD_MAX_MESSAGE', async (t) => {
  const srv = await startServer({ env: { CHATD_WS_PATH: '/socket', CHATD_MAX_MESSAGE: '200', CHATD_ECHO_PATH: '/e' } });
  t.after(() => srv.stop());
  const c = await RawWs.connectClient(srv.port, { path: '/socket' });
  c.destroy();
  const e = await RawWs.connect(srv.port, { path: '/e' });
  await e.sendText('x'.repeat(201));
  const r = await e.readClose();
  assert.equal(r.code, 1009, 'CHATD_MAX_MESSAGE=200 applies');
  e.destroy();
  const { response } = await rawRequest(srv.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  assert.equal(response.status, 404, 'the default /ws is not the socket path any more');
});

test('the command line wins over the environment', async (t) => {
  const srv = await startServer({ env: { CHATD_MAX_MESSAGE: '200', CHATD_ECHO_PATH: '/e' }, options: { 'max-message': 1000 } });
  t.after(() => srv.stop());
  const e = await RawWs.connect(srv.port, { path: '/e' });
  await e.sendText('y'.repeat(500));
  const m = await e.readMessage();
  assert.equal(m.opcode, OP.TEXT);
  assert.equal(m.text.length, 500);
  e.destroy();
});
