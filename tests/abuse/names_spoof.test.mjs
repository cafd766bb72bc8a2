// Attack: impersonate an account by its look. The attacker signs up (and
// presents JWTs) with every spelling of the victim's name that looks the
// same: other letter case beyond ASCII, NFD, fullwidth letters, an
// all-Cyrillic look-alike, one Cyrillic letter in the Latin name, invisible
// characters at every position, bidi controls. Bound: not one of them gets
// the name (409 username_taken or 400 bad_field; a JWT gets a "#<sub>"
// suffix or "user<sub>"), the victim's password still logs in by any
// equivalent spelling, and the victim's ping p99 stays under 100 ms.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer } from '../integration/lib/server.mjs';
import { get, mintJwt, post, register } from '../integration/lib/chat.mjs';
import { startVictim, fmt } from './lib/victim.mjs';

const SECRET = 'names-spoof-' + crypto.randomBytes(8).toString('hex');
const srv = await startServer({ options: { 'jwt-secret': SECRET } });
after(() => srv.stop());

const tail = String(Math.floor(Math.random() * 1e6));
const NAME = `payée${tail}`; // the victim's name, NFC

function lookAlikes() {
  const v = [
    [`PAYÉE${tail}`, 409],
    [`Payée${tail}`, 409],
    [`pAyÉe${tail}`, 409],
    [`paye\u0301e${tail}`, 409], // NFD
    [`PAYE\u0301E${tail}`, 409],
    [`\uff50\uff41\uff59\u00e9\uff45${tail}`, 409], // fullwidth
    [`\u0440\u0430\u0443\u0435\u0301\u0435${tail}`, 409], // all Cyrillic, e + combining acute
    [`p\u0430yée${tail}`, 400], // one Cyrillic а: mixed scripts
    [`paye\u0301\u0301e${tail}`, 400], // a repeated combining mark
  ];
  const invisible = ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u180e', '\u3164'];
  for (const ch of invisible) for (let i = 1; i < NAME.length; i++) v.push([NAME.slice(0, i) + ch + NAME.slice(i), 400]);
  for (const ch of ['\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069', '\u200e', '\u200f']) {
    v.push([ch + NAME, 400], [NAME + ch, 400]);
  }
  return v;
}

test('look-alike sign-ups and JWT names never get the victim\'s name', async () => {
  const owner = await register(srv, NAME, { password: 'owner-password' });
  const victim = await startVictim(srv);
  const t0 = Date.now();
  const variants = lookAlikes();
  const statuses = {};
  for (const [name, want] of variants) {
    const r = await post(srv, '/user/register', { username: name, password: 'attacker-pw' });
    statuses[r.status] = (statuses[r.status] || 0) + 1;
    assert.equal(r.status, want, `${JSON.stringify(name)}: ${r.text}`);
    assert.equal(r.body.code, want === 409 ? 'username_taken' : 'bad_field');
  }
  // The same names as JWT claims: a distinct account each, never the name.
  const nowS = Math.floor(Date.now() / 1000);
  for (const [name] of variants) {
    const sub = 'att-' + crypto.randomBytes(4).toString('hex');
    const r = await get(srv, '/user/me', { token: mintJwt({ sub, exp: nowS + 600, username: name }, SECRET) });
    assert.equal(r.status, 200, `${JSON.stringify(name)}: ${r.text}`);
    const got = r.body.data.username;
    assert.notEqual(r.body.data.id, owner.id);
    assert.ok(got === `user${sub}` || got.endsWith(`#${sub}`), `${JSON.stringify(name)} -> ${JSON.stringify(got)}`);
  }
  const attackMs = Date.now() - t0;
  const st = await victim.stop();
  console.log(fmt('victim during look-alike sign-ups', st));
  console.log(`${variants.length} sign-ups and ${variants.length} JWT names in ${attackMs} ms: ${JSON.stringify(statuses)}`);

  // The owner logs in by any equivalent spelling, with the password only.
  for (const spelling of [NAME, `PAYÉE${tail}`, `paye\u0301e${tail}`, `\uff50\uff41\uff59\u00e9\uff45${tail}`]) {
    const r = await post(srv, '/user/login', { username: spelling, password: 'owner-password' });
    assert.equal(r.status, 200, spelling);
    assert.equal(r.body.data.user.id, owner.id);
  }
  assert.equal((await post(srv, '/user/login', { username: `PAYÉE${tail}`, password: 'attacker-pw' })).status, 401);
  assert.equal(st.lost, 0, 'no victim ping lost');
  assert.ok(st.p99 < 100, `victim p99 ${st.p99} ms < 100 ms`);
});
