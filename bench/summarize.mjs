// summarize.mjs: turns bench/run.sh's raw JSON lines into the suite's table: per point the
// median and range (over the reps) of each server's main rate, chatd's p99 latency, the
// chatd/peer and chatd/floor ratios, and whether issue 5's target for that point is met.
//
// Usage: node bench/summarize.mjs raw.jsonl
import fs from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: node summarize.mjs raw.jsonl');
  process.exit(2);
}
const rows = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const points = new Map(); // point -> target -> [results]
for (const r of rows) {
  if (!points.has(r.point)) points.set(r.point, new Map());
  const t = points.get(r.point);
  if (!t.has(r.target)) t.set(r.target, []);
  t.get(r.target).push(r);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[(s.length - 1) >> 1] : NaN;
};
const fmt = (v) =>
  Number.isNaN(v) || v === undefined ? '-' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toPrecision(3);
const short = (v) => (v >= 1e6 ? (v / 1e6).toFixed(2) + 'M' : v >= 1e3 ? (v / 1e3).toFixed(1) + 'k' : v.toFixed(0));
const cell = (rs) => {
  if (!rs || !rs.length) return '-';
  const v = rs.map((r) => r.rate);
  const m = median(v);
  return rs.length > 1 ? `${fmt(m)} [${short(Math.min(...v))}-${short(Math.max(...v))}]` : fmt(m);
};
const med = (rs, key) => (rs && rs.length ? median(rs.map((r) => r[key]).filter((x) => x != null)) : NaN);

// The targets of issue 5, by point name. A check is true, false or null (no data).
function verdict(point, c, p, f) {
  const rc = med(c, 'rate'), rp = med(p, 'rate'), rf = med(f, 'rate');
  const known = (...xs) => xs.every((x) => !Number.isNaN(x));
  const need = [];
  const check = (ok, text) => need.push(`${ok === null ? '?' : ok ? 'ok' : 'MISS'} ${text}`);
  if (/^echo /.test(point)) {
    check(known(rc, rf) ? rc >= 0.95 * rf : null, '>=0.95x floor');
    check(known(rc, rp) ? rc >= 2 * rp : null, '>=2x peer');
  } else if (/^route \d/.test(point)) {
    check(known(rc, rf) ? rc >= 0.9 * rf : null, '>=0.9x floor');
    check(known(rc, rp) ? rc >= 2.5 * rp : null, '>=2.5x peer');
  } else if (/^route@half/.test(point)) {
    const p99 = med(c, 'lat_p99_us');
    check(known(p99) ? p99 < 1000 : null, 'p99<1ms');
  } else if (/^fanout/.test(point)) {
    check(known(rc, rp) ? rc >= 10 * rp : null, '>=10x peer');
  } else if (/^conns/.test(point)) {
    check(c && c.length ? c.every((r) => r.open === r.n) : null, 'all open');
  } else if (/^chat-pg/.test(point)) {
    check(known(rc) ? rc >= 30000 : null, '>=30k/s');
  } else if (/^chat/.test(point)) {
    check(known(rc) ? rc >= 50000 : null, '>=50k/s');
  }
  return need.join(', ');
}

const units = { echo: 'round trips/s', route: 'events/s delivered', 'route@half': 'events/s delivered',
  fanout: 'deliveries/s', conns: 'connections/s', storm: 'arrivals/s', chat: 'acked messages/s',
  'chat-pg': 'acked messages/s (chatd on PostgreSQL)' };
const header = ['point', 'chatd', 'peer', 'floor', 'c/peer', 'c/floor', 'chatd p99 us', 'noise', 'target'];
// The most CPU other processes took during any run of the point: above ~0.2 cores the
// numbers of that point are suspect.
const noise = (t) => {
  const o = [...t.values()].flat().map((r) => r.other_cpu).filter((x) => x != null && x >= 0);
  return o.length ? Math.max(...o).toFixed(2) : '-';
};
const table = [header];
for (const [point, t] of points) {
  const c = t.get('chatd'), p = t.get('peer'), f = t.get('floor');
  const rc = med(c, 'rate'), rp = med(p, 'rate'), rf = med(f, 'rate');
  table.push([
    point,
    cell(c),
    cell(p),
    cell(f),
    Number.isNaN(rc / rp) ? '-' : (rc / rp).toFixed(2) + 'x',
    Number.isNaN(rc / rf) ? '-' : (rc / rf).toFixed(2) + 'x',
    fmt(med(c, 'lat_p99_us')),
    noise(t),
    verdict(point, c, p, f),
  ]);
}
const widths = header.map((_, i) => Math.max(...table.map((r) => String(r[i]).length)));
for (const [i, r] of table.entries()) {
  console.log(r.map((x, k) => String(x).padEnd(widths[k])).join('  ').trimEnd());
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
}
console.log('\nrates: ' + Object.entries(units).map(([k, v]) => `${k} = ${v}`).join('; '));
console.log('median [min-max] over the reps; floor = chatd-floor, raw TCP echo with the same bytes, ' +
  'connections and window (for route: 2 x pairs connections)');
console.log('noise = most cores other processes used during any run of the point (>0.2: suspect)');
const extra = [];
for (const [point, t] of points) {
  for (const [target, rs] of t) {
    if (/^conns/.test(point))
      extra.push(`${point} on ${target}: ${fmt(med(rs, 'bytes_per_conn'))} bytes/connection (server RSS), ` +
        `connect->init p99 ${fmt(med(rs, 'ready_p99_us'))} us`);
    if (/^chat/.test(point))
      extra.push(`${point} on ${target}: ack latency p50 ${fmt(med(rs, 'lat_p50_us'))} us, p99 ${fmt(med(rs, 'lat_p99_us'))} us` +
        (rs[0].note ? `; ${rs[0].note}` : ''));
    if (/^fanout/.test(point))
      extra.push(`${point} on ${target}: delivery p99 ${fmt(med(rs, 'lat_p99_us'))} us, ` +
        `${fmt(med(rs, 'broadcasts_per_s'))} broadcasts/s`);
  }
}
if (extra.length) console.log('\n' + extra.join('\n'));
