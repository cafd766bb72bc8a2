// The server API POST /gateway/<method>: auth (403 api_disabled, 401), unknown
// method (404), validation (400 naming the field), every method, several
// devices of one uid, groups, sessions, close_client, and that a closed
// connection leaves no trace.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, waitFor } from './lib/server.mjs';
import { api, call, healthz } from './lib/http.mjs';
import { WsClient, openClients } from './lib/ws.mjs';

const SECRET = 'gw-secret-0123456789';

/** A fresh server with the API on and n connected clients; cleaned up after the test. */
async function setup(t, n = 0, options = {}) {
  const srv = await startServer({ options: { 'api-secret': SECRET, ...options } });
  srv.secret = SECRET;
  const clients = await openClients(srv, n);
  t.after(async () => {
    for (const c of clients) c.terminate();
    await srv.stop();
  });
  return { srv, clients };
}

/** Asserts that c's next message is a marker sent now, i.e. nothing else was queued for it. */
async function assertNothingElse(srv, c) {
  const marker = `marker-${Math.random().toString(36).slice(2)}`;
  assert.equal(await call(srv, 'send_to_client', { client_id: c.clientId, data: marker }), 1);
  assert.equal(await c.nextText(), marker, 'no other message was delivered before the marker');
}

function assertError(r, status, code, field) {
  assert.equal(r.status, status, `HTTP status; body ${r.text.slice(0, 300)}`);
  assert.ok(r.body, 'JSON body');
  assert.equal(r.body.status, false);
  if (Array.isArray(code)) assert.ok(code.includes(r.body.code), `code ${r.body.code} in ${code}`);
  else assert.equal(r.body.code, code);
  assert.equal(typeof r.body.msg, 'string');
  if (field) assert.ok(r.body.msg.includes(field), `msg ${JSON.stringify(r.body.msg)} names the field ${field}`);
}

describe('auth', () => {
  test('with no --api-secret the API answers 403 api_disabled', async (t) => {
    const srv = await startServer();
    t.after(() => srv.stop());
    for (const secret of [null, 'anything', '']) {
      const r = await api(srv, 'get_all_client_id_count', {}, { secret });
      assertError(r, 403, 'api_disabled');
    }
    const r = await api(srv, 'send_to_all', { data: 'x' }, { secret: 'x' });
    assertError(r, 403, 'api_disabled');
  });

  test('a wrong or missing secret is 401', async (t) => {
    const { srv } = await setup(t);
    for (const secret of [null, 'wrong', `${SECRET}x`, SECRET.slice(0, -1), SECRET.toUpperCase(), '']) {
      const r = await api(srv, 'get_all_client_id_count', {}, { secret });
      assertError(r, 401, 'unauthorized');
    }
    for (const auth of [`Basic ${Buffer.from(`x:${SECRET}`).toString('base64')}`, SECRET, `Bearer  ${SECRET}x`]) {
      const r = await api(srv, 'get_all_client_id_count', {}, { secret: null, headers: { Authorization: auth } });
      assertError(r, 401, 'unauthorized');
    }
  });

  test('the right secret works, whatever the Content-Type (curl -d sends a form type)', async (t) => {
    const { srv } = await setup(t);
    const r = await api(srv, 'get_all_client_id_count', {});
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: true, msg: 'ok', data: 0 });
    assert.match(r.headers.get('content-type') || '', /^application\/json\b/);
    const r2 = await api(srv, 'get_all_client_id_count', '{}', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(r2.status, 200);
    assert.deepEqual(r2.body, { status: true, msg: 'ok', data: 0 });
  });

  test('CHATD_API_SECRET from the environment enables the API', async (t) => {
    const srv = await startServer({ env: { CHATD_API_SECRET: 'from-env' } });
    t.after(() => srv.stop());
    const ok = await api(srv, 'get_all_uid_count', {}, { secret: 'from-env' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.data, 0);
    const bad = await api(srv, 'get_all_uid_count', {}, { secret: SECRET });
    assertError(bad, 401, 'unauthorized');
  });

  test('an unknown method is 404 unknown_method', async (t) => {
    const { srv } = await setup(t);
    for (const m of ['no_such_method', 'sendToAll', 'send_to_all/extra', '']) {
      const r = await api(srv, m, {});
      assertError(r, 404, ['unknown_method', 'not_found']);
    }
    assertError(await api(srv, 'no_such_method', {}), 404, 'unknown_method');
  });
});

describe('validation', () => {
  test('bad JSON and non-object bodies are 400', async (t) => {
    const { srv } = await setup(t, 1);
    assertError(await api(srv, 'send_to_all', '{"data":'), 400, 'bad_json');
    assertError(await api(srv, 'send_to_all', 'not json at all'), 400, 'bad_json');
    for (const body of ['[]', '"str"', '42', 'null']) {
      assertError(await api(srv, 'send_to_all', body), 400, ['bad_json', 'bad_field']);
    }
  });

  test('missing fields are 400 naming the field', async (t) => {
    const { srv, clients: [a] } = await setup(t, 1);
    assertError(await api(srv, 'send_to_uid', { data: 'x' }), 400, ['missing_field', 'bad_field'], 'uid');
    assertError(await api(srv, 'send_to_uid', { uid: 'u' }), 400, ['missing_field', 'bad_field'], 'data');
    assertError(await api(srv, 'send_to_client', { data: 'x' }), 400, ['missing_field', 'bad_field'], 'client_id');
    assertError(await api(srv, 'send_to_group', { data: 'x' }), 400, ['missing_field', 'bad_field'], 'group');
    assertError(await api(srv, 'send_to_all', {}), 400, ['missing_field', 'bad_field'], 'data');
    assertError(await api(srv, 'bind_uid', { client_id: a.clientId }), 400, ['missing_field', 'bad_field'], 'uid');
    assertError(await api(srv, 'join_group', { client_id: a.clientId }), 400, ['missing_field', 'bad_field'], 'group');
    assertError(await api(srv, 'set_session', { client_id: a.clientId }), 400, ['missing_field', 'bad_field'], 'session');
    assertError(await api(srv, 'is_online', {}), 400, ['missing_field', 'bad_field'], 'client_id');
    // The exact code for a missing field.
    assertError(await api(srv, 'send_to_uid', { data: 'x' }), 400, 'missing_field', 'uid');
  });

  test('wrong-typed and out-of-range fields are 400 bad_field naming the field', async (t) => {
    const { srv, clients: [a] } = await setup(t, 1);
    assertError(await api(srv, 'send_to_uid', { uid: null, data: 'x' }), 400, ['bad_field', 'missing_field'], 'uid');
    for (const uid of [true, {}, '', 'u'.repeat(129), ['ok', false]]) {
      assertError(await api(srv, 'send_to_uid', { uid, data: 'x' }), 400, 'bad_field', 'uid');
    }
    for (const uid of [false, '', 'u'.repeat(129)]) {
      assertError(await api(srv, 'bind_uid', { client_id: a.clientId, uid }), 400, 'bad_field', 'uid');
    }
    for (const group of [true, '', 'g'.repeat(129)]) {
      assertError(await api(srv, 'join_group', { client_id: a.clientId, group }), 400, 'bad_field', 'group');
    }
    for (const client_id of [5, true, {}]) {
      assertError(await api(srv, 'send_to_client', { client_id, data: 'x' }), 400, 'bad_field', 'client_id');
    }
    for (const session of ['str', 5, [1, 2]]) {
      assertError(await api(srv, 'set_session', { client_id: a.clientId, session }), 400, 'bad_field', 'session');
    }
    assertError(await api(srv, 'set_session', { client_id: a.clientId, session: { s: 'x'.repeat(4096) } }), 400, 'bad_field', 'session');
    assertError(await api(srv, 'update_session', { client_id: a.clientId, session: 'x' }), 400, 'bad_field', 'session');
    assertError(await api(srv, 'send_to_all', { data: 'x', exclude_client_ids: 7 }), 400, 'bad_field', 'exclude_client_ids');
  });

  test('boundaries: a 128-byte uid and a session just under 4 KiB are accepted', async (t) => {
    const { srv, clients: [a] } = await setup(t, 1);
    const uid = 'u'.repeat(128);
    assert.equal(await call(srv, 'bind_uid', { client_id: a.clientId, uid }), true);
    assert.equal(await call(srv, 'get_uid_by_client_id', { client_id: a.clientId }), uid);
    assert.equal(await call(srv, 'send_to_uid', { uid, data: 'big uid' }), 1);
    assert.equal(await a.nextText(), 'big uid');
    const session = { s: 'x'.repeat(4000) };
    assert.equal(await call(srv, 'set_session', { client_id: a.clientId, session }), true);
    assert.deepEqual(await call(srv, 'get_session', { client_id: a.clientId }), session);
  });
});

describe('sending', () => {
  test('send_to_all: string as is, JSON serialized, always text', async (t) => {
    const { srv, clients } = await setup(t, 3);
    assert.equal(await call(srv, 'send_to_all', { data: 'hello all' }), 3);
    for (const c of clients) {
      const m = await c.next();
      assert.equal(m.isBinary, false);
      assert.equal(m.text, 'hello all');
    }
    const obj = { type: 'hello', n: 1, nested: { list: [1, 'two', null] }, s: 'é😀' };
    assert.equal(await call(srv, 'send_to_all', { data: obj }), 3);
    for (const c of clients) assert.deepEqual(await c.nextJson(), obj);
    assert.equal(await call(srv, 'send_to_all', { data: '{"raw":"json string"}' }), 3);
    for (const c of clients) assert.equal(await c.nextText(), '{"raw":"json string"}');
    assert.equal(await call(srv, 'send_to_all', { data: 42 }), 3);
    for (const c of clients) assert.equal(await c.nextText(), '42');
    assert.equal(await call(srv, 'send_to_all', { data: [true, false] }), 3);
    for (const c of clients) assert.deepEqual(await c.nextJson(), [true, false]);
    assert.equal(await call(srv, 'send_to_all', { data: 'ünïcødé 😀' }), 3);
    for (const c of clients) assert.equal(await c.nextText(), 'ünïcødé 😀');
  });

  test('fan-out of a 100 KB message to 50 clients arrives intact everywhere', async (t) => {
    const { srv, clients } = await setup(t, 50);
    const data = { blob: 'x'.repeat(100_000), tail: 'é😀' };
    assert.equal(await call(srv, 'send_to_all', { data }), 50);
    const msgs = await Promise.all(clients.map((c) => c.nextJson(5000)));
    for (const m of msgs) assert.deepEqual(m, data);
    assert.equal(await call(srv, 'send_to_all', { data: 'small after big' }), 50);
    for (const c of clients) assert.equal(await c.nextText(), 'small after big');
  });

  test('send_to_all with client_ids and exclude_client_ids', async (t) => {
    const { srv, clients: [a, b, c] } = await setup(t, 3);
    assert.equal(await call(srv, 'send_to_all', { data: 'only ab', client_ids: [a.clientId, b.clientId] }), 2);
    assert.equal(await a.nextText(), 'only ab');
    assert.equal(await b.nextText(), 'only ab');
    await assertNothingElse(srv, c);

    assert.equal(await call(srv, 'send_to_all', { data: 'not a', exclude_client_ids: [a.clientId] }), 2);
    assert.equal(await b.nextText(), 'not a');
    assert.equal(await c.nextText(), 'not a');
    await assertNothingElse(srv, a);

    assert.equal(
      await call(srv, 'send_to_all', { data: 'a only', client_ids: [a.clientId, b.clientId], exclude_client_ids: [b.clientId] }),
      1,
    );
    assert.equal(await a.nextText(), 'a only');
    await assertNothingElse(srv, b);
    await assertNothingElse(srv, c);

    assert.equal(await call(srv, 'send_to_all', { data: 'ghost', client_ids: ['AAAAAAAAAAAAAAAAAAAAAA'] }), 0);
  });

  test('send_to_client: one, a list, and offline (0)', async (t) => {
    const { srv, clients: [a, b, c] } = await setup(t, 3);
    assert.equal(await call(srv, 'send_to_client', { client_id: a.clientId, data: 'to a' }), 1);
    assert.equal(await a.nextText(), 'to a');
    await assertNothingElse(srv, b);
    assert.equal(await call(srv, 'send_to_client', { client_id: [a.clientId, c.clientId], data: { k: 'ac' } }), 2);
    assert.deepEqual(await a.nextJson(), { k: 'ac' });
    assert.deepEqual(await c.nextJson(), { k: 'ac' });
    await assertNothingElse(srv, b);
    assert.equal(await call(srv, 'send_to_client', { client_id: 'AAAAAAAAAAAAAAAAAAAAAA', data: 'x' }), 0);
    assert.equal(await call(srv, 'send_to_client', { client_id: 'not-even-an-id', data: 'x' }), 0);
  });
});

describe('uids', () => {
  test('bind, several devices of one uid, send_to_uid, queries', async (t) => {
    const { srv, clients: [a, b, c] } = await setup(t, 3);
    assert.equal(await call(srv, 'bind_uid', { client_id: a.clientId, uid: 'u1' }), true);
    assert.equal(await call(srv, 'bind_uid', { client_id: b.clientId, uid: 'u1' }), true);
    assert.equal(await call(srv, 'bind_uid', { client_id: c.clientId, uid: 'u2' }), true);

    assert.equal(await call(srv, 'send_to_uid', { uid: 'u1', data: 'to u1' }), 2);
    assert.equal(await a.nextText(), 'to u1');
    assert.equal(await b.nextText(), 'to u1');
    await assertNothingElse(srv, c);
    assert.equal(await call(srv, 'send_to_uid', { uid: ['u1', 'u2'], data: 'to both' }), 3);
    for (const x of [a, b, c]) assert.equal(await x.nextText(), 'to both');
    assert.equal(await call(srv, 'send_to_uid', { uid: 'nobody', data: 'x' }), 0);

    assert.equal(await call(srv, 'is_uid_online', { uid: 'u1' }), true);
    assert.equal(await call(srv, 'is_uid_online', { uid: 'nobody' }), false);
    assert.deepEqual((await call(srv, 'get_client_id_by_uid', { uid: 'u1' })).sort(), [a.clientId, b.clientId].sort());
    assert.deepEqual(
      (await call(srv, 'get_client_id_by_uid', { uid: ['u1', 'u2', 'nobody'] })).sort(),
      [a.clientId, b.clientId, c.clientId].sort(),
    );
    assert.deepEqual(await call(srv, 'get_client_id_by_uid', { uid: 'nobody' }), []);
    assert.equal(await call(srv, 'get_uid_by_client_id', { client_id: a.clientId }), 'u1');
    assert.deepEqual(
      await call(srv, 'get_uid_by_client_id', { client_id: [a.clientId, c.clientId, 'AAAAAAAAAAAAAAAAAAAAAA'] }),
      ['u1', 'u2', null],
    );
    assert.equal(await call(srv, 'get_all_uid_count', {}), 2);
    assert.equal(await call(srv, 'get_all_client_id_count', {}), 3);
    const h = await healthz(srv);
    assert.equal(h.uids, 2);
    assert.equal(h.clients, 3);
  });

  test('binding again moves the client; unbind_uid', async (t) => {
    const { srv, clients: [a, b] } = await setup(t, 2);
    await call(srv, 'bind_uid', { client_id: a.clientId, uid: 'u1' });
    await call(srv, 'bind_uid', { client_id: b.clientId, uid: 'u1' });
    assert.equal(await call(srv, 'bind_uid', { client_id: a.clientId, uid: 'u3' }), true);
    assert.equal(await call(srv, 'get_uid_by_client_id', { client_id: a.clientId }), 'u3');
    assert.deepEqual(await call(srv, 'get_client_id_by_uid', { uid: 'u1' }), [b.clientId]);
    assert.deepEqual(await call(srv, 'get_client_id_by_uid', { uid: 'u3' }), [a.clientId]);
    assert.equal(await call(srv, 'send_to_uid', { uid: 'u1', data: 'u1 only' }), 1);
    assert.equal(await b.nextText(), 'u1 only');
    await assertNothingElse(srv, a);

    assert.equal(await call(srv, 'unbind_uid', { client_id: a.clientId, uid: 'u3' }), true);
    assert.equal(await call(srv, 'get_uid_by_client_id', { client_id: a.clientId }), null);
    assert.equal(await call(srv, 'is_uid_online', { uid: 'u3' }), false);
    assert.equal(await call(srv, 'send_to_uid', { uid: 'u3', data: 'x' }), 0);
    assert.equal(await call(srv, 'get_all_uid_count', {}), 1);
    assert.equal(await call(srv, 'is_online', { client_id: a.clientId }), true, 'unbinding does not disconnect');
  });

  test('--max-conns-per-user caps bind_uid: 429 too_many_connections naming the uid; rebinding a member is fine', async (t) => {
    const { srv, clients: [a, b, c] } = await setup(t, 3, { 'max-conns-per-user': 2 });
    assert.equal(await call(srv, 'bind_uid', { client_id: [a.clientId, b.clientId], uid: 'full' }), true);
    assert.equal(await call(srv, 'bind_uid', { client_id: a.clientId, uid: 'full' }), true, 'already a member');
    assertError(await api(srv, 'bind_uid', { client_id: c.clientId, uid: 'full' }), 429, 'too_many_connections', 'full');
    assert.equal(await call(srv, 'get_uid_by_client_id', { client_id: c.clientId }), null);
    assert.equal(await call(srv, 'is_online', { client_id: c.clientId }), true, 'the refused client stays connected');
    assert.equal(await call(srv, 'send_to_uid', { uid: 'full', data: 'two copies' }), 2);
    // Moving a member away makes room.
    assert.equal(await call(srv, 'bind_uid', { client_id: b.clientId, uid: 'elsewhere' }), true);
    assert.equal(await call(srv, 'bind_uid', { client_id: c.clientId, uid: 'full' }), true);
    await assertNothingElse(srv, c);
  });

  test('a numeric uid is taken as its decimal string', async (t) => {
    const { srv, clients: [a] } = await setup(t, 1);
    assert.equal(await call(srv, 'bind_uid', { client_id: a.clientId, uid: 42 }), true);
    assert.equal(await call(srv, 'get_uid_by_client_id', { client_id: a.clientId }), '42');
    assert.equal(await call(srv, 'is_uid_online', { uid: '42' }), true);
    assert.equal(await call(srv, 'is_uid_online', { uid: 42 }), true);
    assert.equal(await call(srv, 'send_to_uid', { uid: 42, data: 'n' }), 1);
    assert.equal(await call(srv, 'send_to_uid', { uid: '42', data: 's' }), 1);
    assert.equal(await a.nextText(), 'n');
    assert.equal(await a.nextText(), 's');
    assert.deepEqual(await call(srv, 'get_client_id_by_uid', { uid: [42, 'nobody'] }), [a.clientId]);
  });

  test('bind_uid and join_group for a client that is not online are 404', async (t) => {
    const { srv } = await setup(t);
    assertError(await api(srv, 'bind_uid', { client_id: 'AAAAAAAAAAAAAAAAAAAAAA', uid: 'u' }), 404, 'not_found');
    assertError(await api(srv, 'join_group', { client_id: 'AAAAAAAAAAAAAAAAAAAAAA', group: 'g' }), 404, 'not_found');
  });

  test('is_online: one, a list', async (t) => {
    const { srv, clients: [a, b] } = await setup(t, 2);
    assert.equal(await call(srv, 'is_online', { client_id: a.clientId }), true);
    assert.equal(await call(srv, 'is_online', { client_id: 'AAAAAAAAAAAAAAAAAAAAAA' }), false);
    assert.deepEqual(await call(srv, 'is_online', { client_id: [a.clientId, 'AAAAAAAAAAAAAAAAAAAAAA', b.clientId] }), [true, false, true]);
  });
});

describe('groups', () => {
  test('join, send_to_group, counts, uid list, leave, ungroup', async (t) => {
    const { srv, clients: [a, b, c, d] } = await setup(t, 4);
    await call(srv, 'bind_uid', { client_id: a.clientId, uid: 'ua' });
    await call(srv, 'bind_uid', { client_id: b.clientId, uid: 'ua' });
    await call(srv, 'bind_uid', { client_id: c.clientId, uid: 'uc' });
    for (const [x, g] of [[a, 'g1'], [b, 'g1'], [c, 'g2'], [a, 'g3'], [d, 'g1']]) {
      assert.equal(await call(srv, 'join_group', { client_id: x.clientId, group: g }), true);
    }
    // Joining twice is harmless.
    assert.equal(await call(srv, 'join_group', { client_id: a.clientId, group: 'g1' }), true);

    assert.equal(await call(srv, 'send_to_group', { group: 'g1', data: 'to g1' }), 3);
    for (const x of [a, b, d]) assert.equal(await x.nextText(), 'to g1');
    await assertNothingElse(srv, c);
    assert.equal(await call(srv, 'send_to_group', { group: ['g1', 'g2'], data: { g: 12 } }), 4);
    for (const x of [a, b, c, d]) assert.deepEqual(await x.nextJson(), { g: 12 });
    assert.equal(await call(srv, 'send_to_group', { group: 'g1', data: 'not a', exclude_client_ids: [a.clientId] }), 2);
    assert.equal(await b.nextText(), 'not a');
    assert.equal(await d.nextText(), 'not a');
    await assertNothingElse(srv, a);
    assert.equal(await call(srv, 'send_to_group', { group: 'nogroup', data: 'x' }), 0);

    assert.equal(await call(srv, 'get_client_id_count_by_group', { group: 'g1' }), 3);
    assert.equal(await call(srv, 'get_client_id_count_by_group', { group: ['g1', 'g2'] }), 4);
    assert.equal(await call(srv, 'get_client_id_count_by_group', { group: 'nogroup' }), 0);
    assert.deepEqual(await call(srv, 'get_uid_list_by_group', { group: 'g1' }), ['ua'], 'distinct uids of bound members');
    assert.deepEqual(await call(srv, 'get_uid_list_by_group', { group: 'g2' }), ['uc']);
    assert.deepEqual(await call(srv, 'get_uid_list_by_group', { group: 'nogroup' }), []);

    assert.equal(await call(srv, 'leave_group', { client_id: b.clientId, group: 'g1' }), true);
    assert.equal(await call(srv, 'get_client_id_count_by_group', { group: 'g1' }), 2);
    assert.equal(await call(srv, 'send_to_group', { group: 'g1', data: 'after leave' }), 2);
    assert.equal(await a.nextText(), 'after leave');
    assert.equal(await d.nextText(), 'after leave');
    await assertNothingElse(srv, b);

    assert.equal(await call(srv, 'ungroup', { group: 'g1' }), true);
    assert.equal(await call(srv, 'get_client_id_count_by_group', { group: 'g1' }), 0);
    assert.equal(await call(srv, 'send_to_group', { group: 'g1', data: 'x' }), 0);
    assert.deepEqual(await call(srv, 'get_uid_list_by_group', { group: 'g1' }), []);
    // Other groups untouched, members still connected.
    assert.equal(await call(srv, 'get_client_id_count_by_group', { group: 'g3' }), 1);
    assert.equal(await call(srv, 'get_all_client_id_count', {}), 4);
  });
});

describe('close_client', () => {
  test('sends data first, then closes with 1008 "closed by server"', async (t) => {
    const { srv, clients: [a, b] } = await setup(t, 2);
    assert.equal(await call(srv, 'close_client', { client_id: a.clientId, data: { bye: true } }), 1);
    assert.deepEqual(await a.nextJson(), { bye: true });
    const info = await a.waitClose(2000);
    assert.equal(info.code, 1008);
    assert.equal(info.reason, 'closed by server');
    assert.ok(await waitFor(async () => (await call(srv, 'is_online', { client_id: a.clientId })) === false));
    assert.equal(await call(srv, 'get_all_client_id_count', {}), 1);
    assert.equal(b.closeInfo, null, 'the other client stays');
    assert.equal(await call(srv, 'close_client', { client_id: a.clientId }), 0, 'closing an offline client: 0');
  });

  test('a list of client_ids closes each online one', async (t) => {
    const { srv, clients: [a, b, c] } = await setup(t, 3);
    assert.equal(await call(srv, 'close_client', { client_id: [a.clientId, b.clientId, 'AAAAAAAAAAAAAAAAAAAAAA'], data: 'bye all' }), 2);
    for (const x of [a, b]) {
      assert.equal(await x.nextText(), 'bye all');
      assert.equal((await x.waitClose(2000)).code, 1008);
    }
    assert.equal(c.closeInfo, null);
    await assertNothingElse(srv, c);
  });

  test('without data, just the close', async (t) => {
    const { srv, clients: [a] } = await setup(t, 1);
    assert.equal(await call(srv, 'close_client', { client_id: a.clientId }), 1);
    const info = await a.waitClose(2000);
    assert.equal(info.code, 1008);
    assert.deepEqual(await a.drain(0), [], 'no message before the close');
  });
});

describe('sessions', () => {
  test('set, get, update (merge), replace', async (t) => {
    const { srv, clients: [a, b] } = await setup(t, 2);
    assert.equal(await call(srv, 'get_session', { client_id: a.clientId }), null);
    assert.equal(await call(srv, 'set_session', { client_id: a.clientId, session: { name: 'alice', n: 1 } }), true);
    assert.deepEqual(await call(srv, 'get_session', { client_id: a.clientId }), { name: 'alice', n: 1 });
    assert.equal(await call(srv, 'update_session', { client_id: a.clientId, session: { n: 2, list: [1, { x: 'y' }] } }), true);
    assert.deepEqual(await call(srv, 'get_session', { client_id: a.clientId }), { name: 'alice', n: 2, list: [1, { x: 'y' }] });
    assert.equal(await call(srv, 'set_session', { client_id: a.clientId, session: { z: true } }), true);
    assert.deepEqual(await call(srv, 'get_session', { client_id: a.clientId }), { z: true });
    assert.equal(await call(srv, 'get_session', { client_id: b.clientId }), null, 'sessions are per client');
  });
});

describe('a closed connection leaves no trace', () => {
  for (const how of ['close handshake', 'TCP drop']) {
    test(how, async (t) => {
      const { srv, clients: [a, b] } = await setup(t, 2);
      await call(srv, 'bind_uid', { client_id: a.clientId, uid: 'gone' });
      await call(srv, 'join_group', { client_id: a.clientId, group: 'gg' });
      await call(srv, 'set_session', { client_id: a.clientId, session: { k: 1 } });
      await call(srv, 'bind_uid', { client_id: b.clientId, uid: 'stays' });
      const before = await healthz(srv);
      assert.equal(before.clients, 2);
      assert.equal(before.uids, 2);

      if (how === 'close handshake') await a.close(1000);
      else a.terminate();

      const gone = await waitFor(async () => (await call(srv, 'is_online', { client_id: a.clientId })) === false);
      assert.ok(gone, 'is_online false');
      assert.equal(await call(srv, 'is_uid_online', { uid: 'gone' }), false);
      assert.deepEqual(await call(srv, 'get_client_id_by_uid', { uid: 'gone' }), []);
      assert.equal(await call(srv, 'get_uid_by_client_id', { client_id: a.clientId }), null);
      assert.equal(await call(srv, 'get_client_id_count_by_group', { group: 'gg' }), 0);
      assert.deepEqual(await call(srv, 'get_uid_list_by_group', { group: 'gg' }), []);
      assert.equal(await call(srv, 'get_session', { client_id: a.clientId }), null);
      assert.equal(await call(srv, 'get_all_client_id_count', {}), 1);
      assert.equal(await call(srv, 'get_all_uid_count', {}), 1);
      assert.equal(await call(srv, 'send_to_uid', { uid: 'gone', data: 'x' }), 0);
      assert.equal(await call(srv, 'send_to_group', { group: 'gg', data: 'x' }), 0);
      const h = await healthz(srv);
      assert.equal(h.clients, 1);
      assert.equal(h.uids, 1);
      assert.equal(await call(srv, 'send_to_uid', { uid: 'stays', data: 'still here' }), 1);
      assert.equal(await b.nextText(), 'still here');
    });
  }

  test('many clients come and go: counts return to zero', async (t) => {
    const { srv } = await setup(t);
    const clients = await openClients(srv, 30);
    for (const [i, c] of clients.entries()) {
      await call(srv, 'bind_uid', { client_id: c.clientId, uid: `u${i % 7}` });
      await call(srv, 'join_group', { client_id: c.clientId, group: `g${i % 3}` });
    }
    assert.equal(await call(srv, 'get_all_client_id_count', {}), 30);
    assert.equal(await call(srv, 'get_all_uid_count', {}), 7);
    await Promise.all(clients.map((c, i) => (i % 2 ? c.close() : (c.terminate(), c.closed))));
    const h = await waitFor(async () => {
      const x = await healthz(srv);
      return x.clients === 0 && x.uids === 0 ? x : null;
    });
    assert.ok(h, `healthz back to zero: ${JSON.stringify(await healthz(srv))}`);
    assert.equal(await call(srv, 'get_all_client_id_count', {}), 0);
    assert.equal(await call(srv, 'get_all_uid_count', {}), 0);
    assert.equal(await call(srv, 'get_client_id_count_by_group', { group: ['g0', 'g1', 'g2'] }), 0);
  });
});

// A smoke check that a client can be reached right after init (no race between init and registration).
test('a client is addressable as soon as its init arrives', async (t) => {
  const { srv } = await setup(t);
  for (let i = 0; i < 10; i++) {
    const c = await WsClient.open(srv);
    assert.equal(await call(srv, 'send_to_client', { client_id: c.clientId, data: `hi ${i}` }), 1);
    assert.equal(await c.nextText(), `hi ${i}`);
    c.terminate();
  }
});
