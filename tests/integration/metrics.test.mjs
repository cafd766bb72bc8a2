// GET /metrics (Prometheus text format 0.0.4) and GET /readyz (issue 12):
// off by default; every line of a scrape well-formed with each family's TYPE
// before its samples; counters moving after traffic (an HTTP request, a
// WebSocket message, a close with a code, a rate-limit refusal, a store
// commit); --metrics-listen serving only /metrics and /readyz; in cluster
// mode the bus series, and /readyz 503 while Redis is down (a redis-server
// this file starts and stops by PID); /readyz 503 with a JSON reason while
// PostgreSQL is unreachable (PostgreSQL runs only).
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { startServer, freePort, waitFor, pgOnly, HOST } from './lib/server.mjs';
import { call } from './lib/http.mjs';
import { register, uname } from './lib/chat.mjs';
import { WsClient } from './lib/ws.mjs';
import { createDb, dropDb } from './lib/pg.mjs';

const SECRET = 'metrics-secret';

/**
 * Parses a text exposition line by line; throws on the first line that is
 * not well-formed. Returns Map(series text -> value) and the families.
 */
function parseExposition(text) {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  const families = new Map(); // name -> {type, help, samples}
  const series = new Map();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const commentRe = new RegExp(`^# (HELP|TYPE) (${NAME}) (.+)$`);
  const sampleRe = new RegExp(`^(${NAME})(\\{(.*)\\})? (\\S+)$`);
  const labelRe = new RegExp(`^(${NAME})="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"(,|$)`);
  const familyOf = (name) => {
    if (families.has(name)) return families.get(name);
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (name.endsWith(suffix)) {
        const f = families.get(name.slice(0, -suffix.length));
        if (f && f.type === 'histogram') return f;
      }
    }
    return null;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    assert.notEqual(line, '', 'no empty lines');
    if (line.startsWith('#')) {
      const m = commentRe.exec(line);
      assert.ok(m, `a comment is # HELP or # TYPE: ${line}`);
      const [, kind, name, rest] = m;
      const f = families.get(name) ?? { type: null, help: null, samples: 0 };
      families.set(name, f);
      assert.equal(f.samples, 0, `${kind} of ${name} before its samples`);
      if (kind === 'HELP') {
        assert.equal(f.help, null, `one HELP for ${name}`);
        f.help = rest;
      } else {
        assert.equal(f.type, null, `one TYPE for ${name}`);
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest), `type of ${name}: ${rest}`);
        f.type = rest;
        if (rest === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
      }
      continue;
    }
    const m = sampleRe.exec(line);
    assert.ok(m, `a well-formed sample: ${line}`);
    const [, name, , labels, value] = m;
    const f = familyOf(name);
    assert.ok(f && f.type, `TYPE before the samples of ${name}`);
    f.samples++;
    if (labels !== undefined) {
      let rest = labels;
      while (rest.length) {
        const l = labelRe.exec(rest);
        assert.ok(l, `well-formed labels in: ${line}`);
        rest = rest.slice(l[0].length);
      }
    }
    assert.ok(/^[+-]Inf$|^NaN$/.test(value) || Number.isFinite(Number(value)), `a number: ${line}`);
    const key = labels !== undefined ? `${name}{${labels}}` : name;
    assert.ok(!series.has(key), `series once: ${key}`);
    series.set(key, Number(value));
  }
  for (const [name, f] of families) {
    assert.ok(f.type, `${name} has a TYPE`);
    assert.ok(f.samples > 0, `${name} has samples`);
  }
  return { series, families };
}

async function scrape(url) {
  const r = await fetch(url, { signal: AbortSignal.timeout(3000) });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(text).series;
}

const v = (series, key) => series.get(key) ?? 0;

describe('metrics off (the default)', () => {
  let srv;
  after(() => srv?.stop());
  test('GET /metrics is 404; /readyz answers 200 and /healthz still works', async () => {
    srv = await startServer();
    const m = await fetch(`${srv.url}/metrics`);
    await m.arrayBuffer();
    assert.equal(m.status, 404);
    const r = await fetch(`${srv.url}/readyz`);
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.equal(body.status, true);
    assert.equal(body.data.store, 'ok');
    assert.equal(body.data.cluster, null);
    const h = await fetch(`${srv.url}/healthz`);
    await h.arrayBuffer();
    assert.equal(h.status, 200);
  });
});

describe('--metrics on --listen', () => {
  let srv;
  after(() => srv?.stop());

  test('a scrape is well-formed and has the documented families', async () => {
    srv = await startServer({ options: { 'api-secret': SECRET, 'event-rate': 1 }, args: ['--metrics'] });
    srv.secret = SECRET;
    const s = await scrape(`${srv.url}/metrics`);
    for (const key of [
      'chatd_connections{state="http"}',
      'chatd_connections{state="websocket"}',
      'chatd_ws_messages_total{direction="in"}',
      'chatd_ws_bytes_total{direction="out"}',
      'chatd_pushes_total{kind="message"}',
      'chatd_slow_reader_closes_total{protocol="websocket"}',
      'chatd_ratelimit_refusals_total{kind="event"}',
      'chatd_store_up',
      'chatd_store_queue_depth',
      'chatd_store_commit_seconds_bucket{le="+Inf"}',
      'chatd_store_commit_batch_size_count',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'process_start_time_seconds',
    ]) {
      assert.ok(s.has(key), `${key} is present`);
    }
    assert.equal(s.get('chatd_store_up'), 1);
    assert.ok(s.get('process_resident_memory_bytes') > 1e6, 'RSS is read');
    const info = [...s.keys()].filter((k) => k.startsWith('chatd_build_info{'));
    assert.equal(info.length, 1);
    assert.match(info[0], /^chatd_build_info\{version="\d+\.\d+\.\d+",store="(sqlite|postgresql)"\}$/);
    assert.equal(s.get(info[0]), 1);
    // no cluster series without --redis
    assert.ok(![...s.keys()].some((k) => k.startsWith('chatd_cluster_')));
  });

  test('counters move: an HTTP request, WebSocket messages, closes by code, a rate-limit refusal, a store commit', async () => {
    const before = await scrape(`${srv.url}/metrics`);

    // an HTTP request on a known route, and one on an unknown path (a bounded route name)
    await (await fetch(`${srv.url}/healthz`)).arrayBuffer();
    await (await fetch(`${srv.url}/no/such/file-${Date.now()}`)).arrayBuffer();

    // a WebSocket: the 101, a ping answered by a pong, events over --event-rate
    const a = await WsClient.open(srv);
    const b = await WsClient.open(srv);
    const uidA = uname('ma');
    const uidB = uname('mb');
    await call(srv, 'bind_uid', { client_id: a.clientId, uid: uidA });
    await call(srv, 'bind_uid', { client_id: b.clientId, uid: uidB });
    a.sendJson({ type: 'ping' });
    assert.deepEqual(await a.nextJson(), { type: 'pong' });
    const during = await scrape(`${srv.url}/metrics`);
    assert.equal(v(during, 'chatd_connections{state="websocket"}') - v(before, 'chatd_connections{state="websocket"}'), 2);
    // --event-rate 1: a burst of 2, then refusals
    let refused = 0;
    for (let i = 0; i < 4; i++) a.sendJson({ type: 'event', to_id: uidB, data: i });
    for (let i = 0; i < 4; i++) {
      const m = await a.nextJson().catch(() => null);
      if (!m) break;
      if (m.type === 'error' && m.code === 'rate_limited') refused++;
      if (refused === 2) break;
    }
    assert.ok(refused >= 1, 'the event rate limit refused something');

    // closes with a code from the client: 4001 (folded to 4xxx) and 1000
    await a.close(4001);
    await b.close(1000);

    // a store commit: a sign-up is a write
    await register(srv, uname('mu'));

    const after_ = await waitFor(async () => {
      const s = await scrape(`${srv.url}/metrics`);
      return v(s, 'chatd_connections{state="websocket"}') === v(before, 'chatd_connections{state="websocket"}') ? s : null;
    });
    assert.ok(after_, 'the WebSocket gauge went back down');
    const d = (key) => v(after_, key) - v(before, key);
    assert.equal(d('chatd_http_requests_total{route="healthz",code="200"}'), 1);
    assert.equal(d('chatd_http_requests_total{route="static",code="404"}'), 1);
    assert.equal(d('chatd_http_requests_total{route="ws",code="101"}'), 2);
    assert.ok(d('chatd_http_requests_total{route="gateway_api",code="200"}') >= 2, 'the bind_uid calls');
    assert.ok(d('chatd_http_requests_total{route="metrics",code="200"}') >= 2, 'the scrapes themselves');
    assert.ok(d('chatd_http_requests_total{route="chat",code="200"}') >= 1, 'the sign-up');
    assert.ok(d('chatd_ws_messages_total{direction="in"}') >= 5, 'ping + 4 events');
    assert.ok(d('chatd_ws_messages_total{direction="out"}') >= 4, 'inits, pong, event, errors');
    assert.ok(d('chatd_ws_bytes_total{direction="in"}') > 50);
    assert.ok(d('chatd_ws_bytes_total{direction="out"}') > 50);
    assert.ok(d('chatd_pushes_total{kind="event"}') >= 1);
    assert.equal(d('chatd_ratelimit_refusals_total{kind="event"}'), refused);
    assert.equal(d('chatd_ws_closes_total{code="4xxx",initiator="peer"}'), 1);
    assert.equal(d('chatd_ws_closes_total{code="1000",initiator="peer"}'), 1);
    assert.ok(d('chatd_store_commit_batch_size_count') >= 1, 'a commit was recorded');
    assert.ok(d('chatd_store_commit_seconds_count') >= 1, 'a writer pass was timed');
    assert.equal(v(after_, 'chatd_store_queue_depth'), 0);
    assert.ok(v(after_, 'chatd_connections_accepted_total') > v(before, 'chatd_connections_accepted_total'));
  });

  test('a connection that vanishes without a close frame counts as 1006', async () => {
    const before = await scrape(`${srv.url}/metrics`);
    const c = await WsClient.open(srv);
    c.terminate();
    const s = await waitFor(async () => {
      const x = await scrape(`${srv.url}/metrics`);
      return v(x, 'chatd_ws_closes_total{code="1006",initiator="none"}') > v(before, 'chatd_ws_closes_total{code="1006",initiator="none"}') ? x : null;
    });
    assert.ok(s, '1006 counted');
  });

  test('only GET and HEAD', async () => {
    const r = await fetch(`${srv.url}/metrics`, { method: 'POST', body: '' });
    await r.arrayBuffer();
    assert.equal(r.status, 405);
  });
});

describe('--metrics-listen', () => {
  let srv;
  after(() => srv?.stop());
  test('serves only /metrics and /readyz on its own address; --listen does not serve /metrics', async () => {
    const port = await freePort();
    srv = await startServer({ options: { 'metrics-listen': `${HOST}:${port}` } });
    const base = `http://${HOST}:${port}`;
    const s = await scrape(`${base}/metrics`);
    assert.ok(s.has('chatd_store_up'));
    const r = await fetch(`${base}/readyz`);
    assert.equal(r.status, 200);
    assert.equal((await r.json()).data.store, 'ok');
    for (const path of ['/healthz', '/', '/index.html', '/ws', '/gateway/send_to_all', '/user/login']) {
      const x = await fetch(`${base}${path}`);
      await x.arrayBuffer();
      assert.equal(x.status, 404, `${path} is not served on --metrics-listen`);
    }
    const main = await fetch(`${srv.url}/metrics`);
    await main.arrayBuffer();
    assert.equal(main.status, 404, '/metrics is not on --listen without --metrics');
    // what --listen serves is counted, what --metrics-listen serves too
    const after_ = await scrape(`${base}/metrics`);
    assert.ok(v(after_, 'chatd_http_requests_total{route="metrics",code="200"}') >= 1);
    assert.ok(v(after_, 'chatd_http_requests_total{route="readyz",code="200"}') >= 1);
  });

  test('a bad --metrics-listen address stops chatd at start', async () => {
    await assert.rejects(startServer({ options: { 'metrics-listen': 'no-port-here' } }));
  });
});

/** A TCP proxy to host:port that can be cut (every connection dropped) and restored. */
function tcpProxy(target) {
  const sockets = new Set();
  let server = null;
  const proxy = {
    port: 0,
    async start(port = 0) {
      server = net.createServer((c) => {
        const up = net.connect(target.port, target.host);
        sockets.add(c);
        sockets.add(up);
        const drop = () => {
          c.destroy();
          up.destroy();
          sockets.delete(c);
          sockets.delete(up);
        };
        c.on('error', drop).on('close', drop);
        up.on('error', drop).on('close', drop);
        c.pipe(up);
        up.pipe(c);
      });
      await new Promise((resolve, reject) => server.once('error', reject).listen(port, HOST, resolve));
      proxy.port = server.address().port;
    },
    async cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  return proxy;
}

describe('/readyz and PostgreSQL', () => {
  let srv;
  let db;
  let proxy;
  after(async () => {
    await srv?.stop();
    if (proxy) await proxy.cut().catch(() => {});
    if (db) await dropDb(db.name).catch(() => {});
  });
  test('503 with a JSON reason while PostgreSQL is unreachable, 200 again once it is back', pgOnly(), async () => {
    db = await createDb();
    const uri = new URL(db.uri);
    proxy = tcpProxy({ host: uri.hostname, port: Number(uri.port || 5432) });
    await proxy.start();
    uri.hostname = HOST;
    uri.port = String(proxy.port);
    srv = await startServer({ options: { store: uri.toString() }, args: ['--metrics'] });
    const ready = await fetch(`${srv.url}/readyz`);
    assert.equal(ready.status, 200, await ready.text());

    const port = proxy.port;
    await proxy.cut();
    const down = await waitFor(
      async () => {
        const r = await fetch(`${srv.url}/readyz`);
        return r.status === 503 ? r.json() : (await r.arrayBuffer(), null);
      },
      { timeoutMs: 8000, intervalMs: 100 },
    );
    assert.ok(down, '/readyz turned 503');
    assert.equal(down.status, false);
    assert.equal(down.code, 'not_ready');
    assert.deepEqual(down.reasons, ['store_unavailable']);
    assert.equal(down.data.store, 'unavailable');
    // liveness is unaffected; the gauge says the same
    const h = await fetch(`${srv.url}/healthz`);
    assert.equal(h.status, 200);
    assert.equal((await h.json()).data.store, 'unavailable');
    const s = await scrape(`${srv.url}/metrics`);
    assert.equal(s.get('chatd_store_up'), 0);

    await proxy.start(port);
    const back = await waitFor(
      async () => {
        const r = await fetch(`${srv.url}/readyz`);
        await r.arrayBuffer();
        return r.status === 200;
      },
      { timeoutMs: 15000, intervalMs: 200 },
    );
    assert.ok(back, '/readyz is 200 again once PostgreSQL answers');
  });
});

/** A throw-away redis-server on a free port (no persistence); stop() kills it by PID. */
async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const up = await waitFor(
    () =>
      new Promise((resolve) => {
        const s = net.connect(port, HOST, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      }),
    { timeoutMs: 5000, intervalMs: 50 },
  );
  if (!up) {
    child.kill('SIGKILL');
    throw new Error('redis-server did not start');
  }
  return {
    url: `redis://${HOST}:${port}`,
    async stop() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

describe('cluster mode (--redis)', () => {
  let srv;
  let redis;
  after(async () => {
    await srv?.stop();
    await redis?.stop();
  });
  test('bus series are scraped; /readyz is 503 bus_down while Redis is gone', async () => {
    redis = await startRedis();
    srv = await startServer({ options: { redis: redis.url }, args: ['--metrics'] });
    const s = await waitFor(async () => {
      const x = await scrape(`${srv.url}/metrics`);
      return x.get('chatd_cluster_bus_up') === 1 ? x : null;
    });
    assert.ok(s, 'chatd_cluster_bus_up is 1');
    for (const key of ['chatd_cluster_nodes', 'chatd_cluster_bus_published_total', 'chatd_cluster_bus_dropped_total', 'chatd_cluster_bus_received_total']) {
      assert.ok(s.has(key), `${key} is present`);
    }
    assert.equal(s.get('chatd_cluster_nodes'), 1, 'this node alone');
    const ready = await fetch(`${srv.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((await ready.json()).data.cluster, 'up');

    await redis.stop();
    redis = null;
    const down = await waitFor(
      async () => {
        const r = await fetch(`${srv.url}/readyz`);
        return r.status === 503 ? r.json() : (await r.arrayBuffer(), null);
      },
      { timeoutMs: 5000, intervalMs: 50 },
    );
    assert.ok(down, '/readyz turned 503');
    assert.deepEqual(down.reasons, ['bus_down']);
    assert.equal(down.data.cluster, 'down');
    assert.equal(down.data.store, 'ok');
    assert.equal((await scrape(`${srv.url}/metrics`)).get('chatd_cluster_bus_up'), 0);
  });
});
