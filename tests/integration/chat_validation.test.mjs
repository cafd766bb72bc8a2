// Every validation error of the chat service, each a 400 whose msg names the
// field (register, login, search, send over HTTP and over the socket), 409 on
// a taken username, 404 on an unknown to_id, bad_json, 405 and 404 on the
// routes, nothing stored by a refused send; and the login rate limit
// (--login-rate 3) per username and per address.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, fails, get, must, ok, post, register, registerAll, req, uname } from './lib/chat.mjs';

const MAX_TEXT = 64;
const [srv, limited] = await Promise.all([
  startServer({ options: { 'max-text': MAX_TEXT, 'login-rate': 1000 } }),
  startServer({ options: { 'login-rate': 3 } }),
]);
after(() => Promise.all([srv.stop(), limited.stop()]));

const [alice, bob] = await registerAll(srv, [uname('va'), uname('vb')]);

describe('register', () => {
  const base = () => ({ username: uname('rg'), password: 'secret-pw' });
  const cases = [
    ['username of 1 byte', { username: 'a' }, 'bad_field', 'username'],
    ['username of 33 bytes', { username: 'u'.repeat(33) }, 'bad_field', 'username'],
    ['username of 11 characters but 33 bytes', { username: '€'.repeat(11) }, 'bad_field', 'username'],
    ['username with #', { username: 'ab#cd' }, 'bad_field', 'username'],
    ['username with a control character (SOH)', { username: 'ab\u0001cd' }, 'bad_field', 'username'],
    ['username with a tab', { username: 'ab\tcd' }, 'bad_field', 'username'],
    ['username with a newline', { username: 'ab\ncd' }, 'bad_field', 'username'],
    ['username with DEL', { username: 'ab\u007fcd' }, 'bad_field', 'username'],
    ['username with a C1 control character (U+0085 NEL)', { username: 'ab\u0085cd' }, 'bad_field', 'username'],
    ['username with a leading space', { username: ' abcd' }, 'bad_field', 'username'],
    ['username with a trailing space', { username: 'abcd ' }, 'bad_field', 'username'],
    ['username missing', { username: undefined }, 'missing_field', 'username'],
    ['username not a string', { username: 12345 }, 'bad_field', 'username'],
    ['password of 5 bytes', { password: '12345' }, 'bad_field', 'password'],
    ['password of 129 bytes', { password: 'p'.repeat(129) }, 'bad_field', 'password'],
    ['password missing', { password: undefined }, 'missing_field', 'password'],
    ['password not a string', { password: 12345678 }, 'bad_field', 'password'],
    ['userpic javascript: URL', { userpic: 'javascript:alert(1)' }, 'bad_field', 'userpic'],
    ['userpic JavaScript: URL in capitals', { userpic: 'JAVASCRIPT:alert(1)' }, 'bad_field', 'userpic'],
    ['userpic data: URL', { userpic: 'data:image/png;base64,AAAA' }, 'bad_field', 'userpic'],
    ['userpic protocol-relative URL', { userpic: '//evil.example/a.png' }, 'bad_field', 'userpic'],
    ['userpic of 513 bytes', { userpic: 'https://example.com/' + 'a'.repeat(513 - 20) }, 'bad_field', 'userpic'],
    ['userpic not a string', { userpic: 7 }, 'bad_field', 'userpic'],
  ];
  for (const [name, patch, code, field] of cases) {
    test(`${name} -> 400 ${code}`, async () => {
      const body = { ...base(), ...patch };
      fails(await post(srv, '/user/register', body), 400, code, field);
      // Nothing was created.
      if (typeof body.username === 'string' && typeof body.password === 'string' && body.password.length <= 128) {
        fails(await post(srv, '/user/login', { username: body.username, password: body.password }), 401, 'bad_credentials', undefined, 'no account was made');
      }
    });
  }

  test('the limits themselves are accepted: 2- and 32-byte usernames, 6- and 128-byte passwords, /path and 512-byte userpics', async () => {
    const two = `${String.fromCharCode(65 + Math.floor(Math.random() * 26))}${Math.floor(Math.random() * 10)}`;
    const long = uname('L').padEnd(32, 'x');
    assert.equal(Buffer.byteLength(long), 32);
    const pic512 = 'https://example.com/' + 'p'.repeat(512 - 20);
    const [r1, r2] = await Promise.all([
      post(srv, '/user/register', { username: two, password: '123456', userpic: '/pics/a.png' }),
      post(srv, '/user/register', { username: long, password: 'q'.repeat(128), userpic: pic512 }),
    ]);
    assert.deepEqual(ok(r1).user, { id: ok(r1).user.id, username: two, userpic: '/pics/a.png' });
    assert.deepEqual(ok(r2).user, { id: ok(r2).user.id, username: long, userpic: pic512 });
    assert.equal(ok(await post(srv, '/user/login', { username: two, password: '123456' })).user.id, ok(r1).user.id);
  });

  test('a taken username -> 409 username_taken, also in other letter case', async () => {
    const name = uname('Dup');
    ok(await post(srv, '/user/register', { username: name, password: 'first-pw' }));
    fails(await post(srv, '/user/register', { username: name, password: 'second-pw' }), 409, 'username_taken', 'username');
    fails(await post(srv, '/user/register', { username: name.toUpperCase(), password: 'third-pw' }), 409, 'username_taken', 'username');
    fails(await post(srv, '/user/register', { username: name.toLowerCase(), password: 'fourth-pw' }), 409, 'username_taken', 'username');
    // The first account still has its first password.
    ok(await post(srv, '/user/login', { username: name, password: 'first-pw' }));
    fails(await post(srv, '/user/login', { username: name, password: 'second-pw' }), 401, 'bad_credentials');
  });
});

// One account per look: names are unique by the key skeleton(NFKC_Casefold)
// of docs/API.md, invisible and bidi-control characters are refused, and
// scripts are not mixed. Each name ends in a number unique to the test run.
describe('usernames beyond ASCII', () => {
  const n = () => String(Math.floor(Math.random() * 1e9));

  test("'Jürgen', then 'JÜRGEN' and the NFD form -> 409 username_taken; login by any of them", async () => {
    const tail = n();
    const nfc = `Jürgen${tail}`;
    const r = ok(await post(srv, '/user/register', { username: nfc, password: 'juergen-pw' }));
    assert.equal(r.user.username, nfc);
    fails(await post(srv, '/user/register', { username: `JÜRGEN${tail}`, password: 'other-pw' }), 409, 'username_taken', 'username');
    const nfd = `Ju\u0308rgen${tail}`;
    assert.notEqual(nfd, nfc);
    fails(await post(srv, '/user/register', { username: nfd, password: 'other-pw' }), 409, 'username_taken', 'username');
    fails(await post(srv, '/user/register', { username: `ｊüｒｇｅｎ${tail}`, password: 'other-pw' }), 409, 'username_taken', 'username');
    for (const spelling of [nfc, nfd, `JÜRGEN${tail}`, `jürgen${tail}`]) {
      assert.equal(ok(await post(srv, '/user/login', { username: spelling, password: 'juergen-pw' })).user.id, r.user.id, spelling);
    }
    fails(await post(srv, '/user/login', { username: `JÜRGEN${tail}`, password: 'other-pw' }), 401, 'bad_credentials', undefined, 'still needs the password');
    fails(await post(srv, '/user/login', { username: `Jurgen${tail}`, password: 'juergen-pw' }), 401, 'bad_credentials', undefined, 'u is not ü');
  });

  test('an NFD name is stored as NFC', async () => {
    const tail = n();
    const r = ok(await post(srv, '/user/register', { username: `Zoe\u0308${tail}`, password: 'zoe-pw-1' }));
    assert.equal(r.user.username, `Zoë${tail}`);
  });

  test("'payee', then the all-Cyrillic look-alike 'рауее' -> 409; 'paypal' with one Cyrillic а -> 400 (mixed scripts)", async () => {
    const tail = n();
    ok(await post(srv, '/user/register', { username: `payee${tail}`, password: 'payee-pw' }));
    fails(await post(srv, '/user/register', { username: `\u0440\u0430\u0443\u0435\u0435${tail}`, password: 'other-pw' }), 409, 'username_taken', 'username');
    ok(await post(srv, '/user/register', { username: `paypal${tail}`, password: 'paypal-pw' }));
    const r = fails(await post(srv, '/user/register', { username: `p\u0430ypal${tail}`, password: 'other-pw' }), 400, 'bad_field', 'username');
    assert.match(r.msg, /scripts/);
    // a name in one other script is fine
    ok(await post(srv, '/user/register', { username: `Иван${tail}`, password: 'ivan-pw-1' }));
  });

  const refused = [
    ['U+200B zero width space', 'al\u200bice'],
    ['U+200D zero width joiner', 'al\u200dice'],
    ['U+202E right-to-left override', 'evil\u202egpj'],
    ['U+2066 left-to-right isolate', '\u2066alice'],
    ['U+FEFF byte order mark', '\ufeffalice'],
    ['U+00A0 no-break space', 'Mary\u00a0Ann'],
    ['two spaces in a row', 'Mary  Ann'],
    ['U+3164 Hangul filler', 'al\u3164ice'],
  ];
  for (const [what, name] of refused) {
    test(`a name with ${what} -> 400 bad_field`, async () => {
      const username = `${name}${n()}`;
      fails(await post(srv, '/user/register', { username, password: 'secret-pw' }), 400, 'bad_field', 'username');
      fails(await post(srv, '/user/login', { username, password: 'secret-pw' }), 401, 'bad_credentials', undefined, 'no account was made');
    });
  }

  test('usernames beyond ASCII keep working in messages (from_username) and search', async () => {
    const tail = n();
    const j = await register(srv, `Jürgen${tail}`);
    const m = ok(await post(srv, '/chat/send', { to_id: alice.id, type: 'text', data: 'hallo' }, { token: j.token }));
    assert.equal(m.from_username, `Jürgen${tail}`);
    const hist = ok(await get(srv, `/chat/history?userid=${j.id}`, { token: alice.token }));
    assert.equal(hist[0].from_username, `Jürgen${tail}`);
    for (const q of [`Jürgen${tail}`, `JÜRGEN${tail}`, `ju\u0308rgen${tail}`]) {
      const found = ok(await get(srv, `/user/search?q=${encodeURIComponent(q)}`, { token: alice.token }));
      assert.deepEqual(found.map((u) => u.id), [j.id], `search ${q}`);
    }
    // prefixes only (docs/API.md): an inner part of the name finds nothing
    assert.deepEqual(ok(await get(srv, `/user/search?q=${encodeURIComponent(`ÜRGEN${tail}`)}`, { token: alice.token })), []);
  });
});

describe('login and search', () => {
  test('login: missing or wrong-typed fields -> 400, unknown user or wrong password -> 401 bad_credentials', async () => {
    fails(await post(srv, '/user/login', { password: 'x1234567' }), 400, 'missing_field', 'username');
    fails(await post(srv, '/user/login', { username: alice.username }), 400, 'missing_field', 'password');
    fails(await post(srv, '/user/login', { username: 5, password: 'x1234567' }), 400, 'bad_field', 'username');
    fails(await post(srv, '/user/login', { username: alice.username, password: 5 }), 400, 'bad_field', 'password');
    fails(await post(srv, '/user/login', { username: alice.username, password: 'not-her-password' }), 401, 'bad_credentials');
    fails(await post(srv, '/user/login', { username: 'nobody-at-all', password: 'whatever1' }), 401, 'bad_credentials');
  });

  test('search: q missing, empty or over 128 bytes -> 400 naming q', async () => {
    fails(await get(srv, '/user/search', { token: alice.token }), 400, ['missing_field', 'bad_field'], 'q');
    fails(await get(srv, '/user/search?q=', { token: alice.token }), 400, ['missing_field', 'bad_field'], 'q');
    fails(await get(srv, `/user/search?q=${'a'.repeat(129)}`, { token: alice.token }), 400, 'bad_field', 'q');
    assert.ok(Array.isArray(ok(await get(srv, `/user/search?q=${'a'.repeat(128)}`, { token: alice.token }))));
  });
});

describe('send', () => {
  const euro = '€'; // 3 bytes in UTF-8
  // [name, message fields (merged over a valid text message), HTTP status, code, field]
  const cases = [
    ['to_id missing', { to_id: undefined }, 400, 'missing_field', 'to_id'],
    ['to_id not a number', { to_id: 'abc' }, 400, 'bad_field', 'to_id'],
    ['to_id a number with junk', { to_id: '12abc' }, 400, 'bad_field', 'to_id'],
    ['to_id a fraction', { to_id: 1.5 }, 400, 'bad_field', 'to_id'],
    ['to_id zero', { to_id: 0 }, 400, 'bad_field', 'to_id'],
    ['to_id negative', { to_id: -3 }, 400, 'bad_field', 'to_id'],
    ['to_id a boolean', { to_id: true }, 400, 'bad_field', 'to_id'],
    ['to_id oneself', { to_id: 'SELF' }, 400, 'bad_field', 'to_id'],
    ['to_id oneself as a string', { to_id: 'SELF_STR' }, 400, 'bad_field', 'to_id'],
    ['to_id unknown', { to_id: 987654321 }, 404, 'not_found', 'to_id'],
    ['type not allowed', { type: 'video' }, 400, 'bad_field', 'type'],
    ['type missing', { type: undefined }, 400, 'missing_field', 'type'],
    ['type not a string', { type: 5 }, 400, 'bad_field', 'type'],
    ['data empty', { data: '' }, 400, 'bad_field', 'data'],
    ['data missing', { data: undefined }, 400, 'missing_field', 'data'],
    ['data not a string', { data: 123 }, 400, 'bad_field', 'data'],
    [`data of ${MAX_TEXT + 1} bytes`, { data: 'x'.repeat(MAX_TEXT + 1) }, 400, 'bad_field', 'data'],
    [`data of 22 characters, 66 bytes`, { data: euro.repeat(22) }, 400, 'bad_field', 'data'],
    ['image data a javascript: URL', { type: 'image', data: 'javascript:alert(1)' }, 400, 'bad_field', 'data'],
    ['image data an ftp URL', { type: 'image', data: 'ftp://example.com/a.png' }, 400, 'bad_field', 'data'],
    ['image data a data: URL', { type: 'image', data: 'data:image/png;base64,AAAA' }, 400, 'bad_field', 'data'],
    ['image data protocol-relative', { type: 'image', data: '//evil.example/a.png' }, 400, 'bad_field', 'data'],
    ['image data plain text', { type: 'image', data: 'a cat' }, 400, 'bad_field', 'data'],
    ['client_msg_id of 65 bytes', { client_msg_id: 'c'.repeat(65) }, 400, 'bad_field', 'client_msg_id'],
    ['client_msg_id empty', { client_msg_id: '' }, 400, 'bad_field', 'client_msg_id'],
    ['client_msg_id not a string', { client_msg_id: 42 }, 400, 'bad_field', 'client_msg_id'],
  ];
  const build = (patch, from, to) => {
    const m = { to_id: to.id, type: 'text', data: 'valid text', ...patch };
    if (m.to_id === 'SELF') m.to_id = from.id;
    if (m.to_id === 'SELF_STR') m.to_id = String(from.id);
    for (const k of Object.keys(m)) if (m[k] === undefined) delete m[k];
    return m;
  };

  test('over HTTP: each refused with its status, code and a msg naming the field; nothing stored', async () => {
    const before = await must(srv, 'GET', `/chat/history?userid=${bob.id}&limit=100`, { token: alice.token });
    for (const [name, patch, status, code, field] of cases) {
      fails(await post(srv, '/chat/send', build(patch, alice, bob), { token: alice.token }), status, code, field, name);
    }
    assert.deepEqual(await must(srv, 'GET', `/chat/history?userid=${bob.id}&limit=100`, { token: alice.token }), before, 'no refused send was stored');
    assert.deepEqual(await must(srv, 'GET', '/chat/unread', { token: bob.token }), { total: before.filter((m) => m.to_id === bob.id).length, conversations: before.some((m) => m.to_id === bob.id) ? [{ userid: alice.id, noreadnum: before.filter((m) => m.to_id === bob.id).length }] : [], groups: [] });
  });

  test('over the socket: each answered with an error carrying code, msg, op and client_msg_id; the socket stays open', async (t) => {
    const s = await ChatSocket.bound(srv, alice, t);
    const b1 = await ChatSocket.bound(srv, bob, t);
    const before = await must(srv, 'GET', `/chat/history?userid=${bob.id}&limit=100`, { token: alice.token });
    for (const [i, [name, patch, , code, field]] of cases.entries()) {
      const m = build(patch, alice, bob);
      if (!('client_msg_id' in patch)) m.client_msg_id = `v-${i}`;
      s.sendJson({ type: 'send', message: m });
      const e = await s.next();
      assert.equal(e.type, 'error', `${name}: ${JSON.stringify(e)}`);
      assert.equal(e.code, code, `${name}: code (${JSON.stringify(e)})`);
      assert.equal(e.op, 'send', `${name}: op`);
      assert.equal(typeof e.msg, 'string');
      assert.ok(e.msg.includes(field), `${name}: msg ${JSON.stringify(e.msg)} names ${field}`);
      assert.deepEqual(e.client_msg_id, m.client_msg_id, `${name}: the error carries the client_msg_id`);
    }
    // A send that is not an object, and a message that is not JSON.
    s.sendJson({ type: 'send' });
    let e = await s.expect('error');
    assert.equal(e.code, 'missing_field');
    assert.ok(e.msg.includes('message'), e.msg);
    s.sendJson({ type: 'send', message: 'hello' });
    e = await s.expect('error');
    assert.equal(e.code, 'missing_field');
    s.ws.send('{"type":"send", not json');
    e = await s.expect('error');
    assert.equal(e.code, 'bad_json');
    await s.quiet();
    await b1.quiet('(nothing was pushed to the recipient)');
    assert.deepEqual(await must(srv, 'GET', `/chat/history?userid=${bob.id}&limit=100`, { token: alice.token }), before, 'no refused send was stored');

    // A refused client_msg_id was not used up: a valid send with it stores a message.
    s.sendMsg(bob, 'now valid', { client_msg_id: 'v-0' });
    const ack = await s.expect('ack');
    assert.equal(ack.message.client_msg_id, 'v-0');
    assert.equal(ack.message.data, 'now valid');
    assert.deepEqual(await b1.next(), { type: 'message', message: ack.message });
  });

  test('the limits themselves are accepted', async () => {
    const cases = [
      { data: 'x'.repeat(MAX_TEXT) },
      { data: '€'.repeat(21) + 'x' }, // 64 bytes
      { data: 'y', client_msg_id: 'k'.repeat(64) },
      { type: 'image', data: 'https://example.com/a.png' },
      { type: 'image', data: 'http://example.com/a.png' },
      { type: 'image', data: '/uploads/a.png' },
      { type: 'emoji', data: '👍' },
      { to_id: String(bob.id), data: 'to_id as a decimal string' },
    ];
    for (const patch of cases) {
      const body = { to_id: bob.id, type: 'text', ...patch };
      const m = ok(await post(srv, '/chat/send', body, { token: alice.token }), JSON.stringify(patch).slice(0, 80));
      assert.equal(m.data, body.data);
      assert.equal(m.type, body.type);
      assert.equal(m.to_id, bob.id);
      assert.equal(m.client_msg_id, body.client_msg_id ?? null);
    }
  });
});

describe('query parameters: a bad value is 400 bad_field naming it, never a default', () => {
  const PAGE_LIMIT = 100; // chatd's default --page-limit
  const D32 = '9'.repeat(32);
  // [parameter, bad raw values]; each is tried alone on top of a valid query.
  const ints = (min, max) => ['', '%00', '5%00', '%005', 'abc', '-1', '+5', '%205', '5%20', '1e3', '0x10', '5.0', D32, '9'.repeat(20), '%zz', '%', String(min - 1), String(max + 1)];
  const cases = [
    ['/chat/history', (v) => ({ userid: bob.id, before: 0, limit: 5, ...v }), { userid: ints(1, 2 ** 53), before: ints(0, 2 ** 53), limit: ints(1, PAGE_LIMIT) }],
    ['/chat/sync', (v) => ({ after: 0, limit: 5, ...v }), { after: ints(0, 2 ** 53), limit: ints(1, PAGE_LIMIT) }],
  ];
  const qs = (o) => Object.entries(o).map(([k, v]) => `${k}=${v}`).join('&');
  for (const [path, base, params] of cases) {
    for (const [name, values] of Object.entries(params)) {
      test(`${path}: bad ${name} -> 400 bad_field`, async () => {
        for (const raw of values) {
          // Number.MAX_SAFE_INTEGER + 1 is in range for int64: skip it as a "bad" upper bound.
          if (raw === String(2 ** 53 + 1)) continue;
          const url = `${path}?${qs(base({ [name]: raw }))}`;
          fails(await get(srv, url, { token: alice.token }), 400, 'bad_field', name, url);
        }
        // A bare name without "=" is an empty value too.
        const bare = `${path}?${qs(base({}))}`.replace(`${name}=${base({})[name]}`, name);
        fails(await get(srv, bare, { token: alice.token }), 400, 'bad_field', name, bare);
      });
    }
  }

  test('/chat/history: userid absent -> 400 missing_field; good values and absent optional ones work', async () => {
    fails(await get(srv, '/chat/history?limit=5', { token: alice.token }), 400, 'missing_field', 'userid');
    for (const q of [`userid=${bob.id}`, `userid=${bob.id}&before=0&limit=1`, `userid=${bob.id}&limit=${PAGE_LIMIT}`, `before=0&userid=${bob.id}`, `userid=${bob.id}&unknown=%zz`]) {
      assert.ok(Array.isArray(ok(await get(srv, `/chat/history?${q}`, { token: alice.token }), q)), q);
    }
    for (const q of ['', 'after=0', `limit=1`, `after=0&limit=${PAGE_LIMIT}`]) {
      assert.ok(Array.isArray(ok(await get(srv, `/chat/sync?${q}`, { token: alice.token }), q)), q);
    }
  });

  test('/user/search: q with a NUL, a bad escape or a bare name -> 400 bad_field naming q', async () => {
    for (const raw of ['%00', 'ab%00cd', '%zz', 'ab%', 'ab%4']) {
      fails(await get(srv, `/user/search?q=${raw}`, { token: alice.token }), 400, 'bad_field', 'q', raw);
    }
    fails(await get(srv, '/user/search?q', { token: alice.token }), 400, 'bad_field', 'q');
    fails(await get(srv, '/user/search?other=1', { token: alice.token }), 400, 'missing_field', 'q');
    assert.ok(Array.isArray(ok(await get(srv, `/user/search?q=${encodeURIComponent('a b')}`, { token: alice.token }))));
  });
});

describe('routes and bodies', () => {
  test('a body that is not a JSON object -> 400 bad_json', async () => {
    const bodies = ['not json', '{"to_id":', '[1,2]', '"str"', 'null', '42', ''];
    const targets = [
      ['/chat/send', alice.token],
      ['/chat/read', alice.token],
      ['/chat/bind', alice.token],
      ['/user/register', undefined],
      ['/user/login', undefined],
    ];
    for (const [path, token] of targets) {
      for (const b of bodies) fails(await post(srv, path, b, { token }), 400, 'bad_json', undefined, `${path} with ${JSON.stringify(b)}`);
    }
  });

  test('a wrong method -> 405 method_not_allowed', async () => {
    for (const [m, p] of [
      ['GET', '/chat/send'],
      ['GET', '/chat/read'],
      ['GET', '/chat/bind'],
      ['POST', '/chat/list'],
      ['POST', '/chat/history'],
      ['PUT', '/chat/sync'],
      ['DELETE', '/chat/sync'],
      ['POST', '/chat/unread'],
      ['PUT', '/chat/send'],
      ['DELETE', '/user/me'],
      ['GET', '/user/register'],
      ['GET', '/user/login'],
      ['GET', '/user/logout'],
      ['POST', '/user/me'],
      ['POST', '/user/search'],
    ]) {
      fails(await req(srv, m, p, { token: alice.token, body: m === 'GET' || m === 'DELETE' ? undefined : {} }), 405, 'method_not_allowed', undefined, `${m} ${p}`);
    }
  });

  test('an unknown /chat/ or /user/ path -> 404 not_found', async () => {
    for (const [m, p] of [
      ['GET', '/chat/nope'],
      ['POST', '/chat/nope'],
      ['GET', '/chat/'],
      ['GET', '/chat/list/extra'],
      ['POST', '/chat/send/'],
      ['GET', '/user/nope'],
      ['GET', '/user/'],
    ]) {
      fails(await req(srv, m, p, { token: alice.token, body: m === 'POST' ? {} : undefined }), 404, 'not_found', undefined, `${m} ${p}`);
    }
  });
});

describe('login rate limit (--login-rate 3)', () => {
  /** Fixed one-minute windows: keep a test inside one. */
  async function awayFromMinuteEdge(needMs = 6000) {
    const left = 60000 - (Date.now() % 60000);
    if (left < needMs) await sleep(left + 150);
  }

  test('the 4th attempt in a minute for one username -> 429 rate_limited; then the address is limited too', async () => {
    const u = await register(limited, uname('rl'));
    await awayFromMinuteEdge();
    ok(await post(limited, '/user/login', { username: u.username, password: u.password }), 'attempt 1');
    fails(await post(limited, '/user/login', { username: u.username, password: 'wrong-password' }), 401, 'bad_credentials', undefined, 'attempt 2');
    ok(await post(limited, '/user/login', { username: u.username, password: u.password }), 'attempt 3');
    const r4 = fails(await post(limited, '/user/login', { username: u.username, password: u.password }), 429, 'rate_limited', undefined, 'attempt 4');
    assert.match(r4.msg, /username|address/);
    // 127.0.0.1 has made 4 attempts: any username is refused from it now.
    const r5 = fails(await post(limited, '/user/login', { username: uname('other'), password: 'whatever1' }), 429, 'rate_limited', 'address');
    assert.ok(r5);
    // Register is not limited.
    ok(await post(limited, '/user/register', { username: uname('rlx'), password: 'another-pw' }));
  });

  test('per username across addresses (failures lock out the failing addresses, not the owner), and per address across usernames', async () => {
    const u = await register(limited, uname('rm'));
    await awayFromMinuteEdge();
    const from = (n) => ({ localAddress: `127.0.0.${n}` });
    // Three wrong passwords for one username from three addresses: the username is under attack.
    for (const n of [11, 12, 13]) fails(await post(limited, '/user/login', { username: u.username, password: 'wrong-password' }, from(n)), 401, 'bad_credentials', undefined, `from 127.0.0.${n}`);
    // An address that failed against it is refused, even with the right password...
    fails(await post(limited, '/user/login', { username: u.username, password: u.password }, from(11)), 429, 'rate_limited', 'username');
    // ...while the owner, from an address that has not failed, logs in.
    ok(await post(limited, '/user/login', { username: u.username, password: u.password }, from(14)), 'owner from a fresh address');
    // One address, three usernames, then a fourth: the address is limited.
    const ghosts = [uname('g'), uname('g'), uname('g'), uname('g')];
    for (const g of ghosts.slice(0, 3)) fails(await post(limited, '/user/login', { username: g, password: 'whatever1' }, from(21)), 401, 'bad_credentials');
    fails(await post(limited, '/user/login', { username: ghosts[3], password: 'whatever1' }, from(21)), 429, 'rate_limited', 'address');
    // The same fourth username from another address is only an unknown user.
    fails(await post(limited, '/user/login', { username: ghosts[3], password: 'whatever1' }, from(22)), 401, 'bad_credentials');
  });

  test('the per-username limit counts the account, whatever the letter case of the name', async () => {
    const u = await register(limited, uname('case'));
    await awayFromMinuteEdge();
    const from = (n) => ({ localAddress: `127.0.0.${n}` });
    // Login matches usernames ignoring case, so these are failures on one account.
    const variant = u.username[0].toUpperCase() + u.username.slice(1).toLowerCase();
    for (const [i, name] of [u.username, u.username.toLowerCase(), variant].entries()) {
      fails(await post(limited, '/user/login', { username: name, password: 'wrong-password' }, from(32 + i)), 401, 'bad_credentials');
    }
    fails(await post(limited, '/user/login', { username: u.username.toUpperCase(), password: u.password }, from(34)), 429, 'rate_limited', 'username', `an address that failed against the account as ${variant}`);
    ok(await post(limited, '/user/login', { username: u.username.toUpperCase(), password: u.password }, from(35)), 'the owner from a fresh address');
  });

  test('the per-username limit counts the account, whatever the Unicode spelling of the name', async () => {
    const tail = String(Math.floor(Math.random() * 1e9));
    const u = await register(limited, `Jürgen${tail}`);
    await awayFromMinuteEdge();
    const from = (n) => ({ localAddress: `127.0.0.${n}` });
    // NFD, capitals beyond ASCII, fullwidth: one account, so failures under
    // each spelling count on one counter
    const spellings = [`Ju\u0308rgen${tail}`, `JÜRGEN${tail}`, `ｊüｒｇｅｎ${tail}`];
    for (const [i, name] of spellings.entries()) {
      fails(await post(limited, '/user/login', { username: name, password: 'wrong-password' }, from(41 + i)), 401, 'bad_credentials', undefined, name);
    }
    fails(await post(limited, '/user/login', { username: `jürgen${tail}`, password: u.password }, from(43)), 429, 'rate_limited', 'username', `an address that failed against the account as ${spellings[2]}`);
    ok(await post(limited, '/user/login', { username: `jürgen${tail}`, password: u.password }, from(44)), 'the owner from a fresh address');
  });
});
