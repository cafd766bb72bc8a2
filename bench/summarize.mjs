// summarize.mjs: turns bench/run.sh's raw JSON lines into the suite's table: per point the
// median and range (over the reps) of each server's main rate, chatd's p99 latency, the
// chatd/peer and chatd/floor ratios, and whether issue 5's target for that point is met.
// Points named "cluster ..." (run.sh cluster, issue 9) get a table of their own: per
// configuration (single chatd, cluster with both ends on one node, ends on two nodes) the
// rate, latency, the CPU of both nodes and of Redis, and issue 9's goals.
//
// Usage: node bench/summarize.mjs raw.jsonl
import fs from 'node:fs';

const tdOnly = process.argv[2] === '--tls-deflate';
const file = process.argv[tdOnly ? 3 : 2];
if (!file) {
  console.error('usage: node summarize.mjs [--tls-deflate] raw.jsonl');
  process.exit(2);
}
const allRows = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
// "td ..." points (run.sh tls-deflate, issue 12) have a table of their own (--tls-deflate).
// "groups ..." points (run.sh groups, issue 11) too: run.sh prints them (groups-summary.txt).
const rows = allRows.filter((r) => !/^(td|groups) /.test(r.point));
// The main table is chatd-bench's; load_test's results (issue 14) are in the generators table.
const ownRows = rows.filter((r) => r.gen !== 'load_test');
if (tdOnly) {
  tlsDeflate(allRows.filter((r) => /^td /.test(r.point)));
  process.exit(0);
}
const points = new Map(); // point -> target -> [results]
for (const r of ownRows) {
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
const isCluster = (point) => /^cluster /.test(point);
for (const [point, t] of points) {
  if (isCluster(point)) continue;
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
const printTable = (tab) => {
  const widths = tab[0].map((_, i) => Math.max(...tab.map((r) => String(r[i]).length)));
  for (const [i, r] of tab.entries()) {
    console.log(r.map((x, k) => String(x).padEnd(widths[k])).join('  ').trimEnd());
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
};
if (table.length > 1) {
  printTable(table);
  console.log('\nrates: ' + Object.entries(units).map(([k, v]) => `${k} = ${v}`).join('; '));
  console.log('median [min-max] over the reps; floor = chatd-floor, raw TCP echo with the same bytes, ' +
    'connections and window (for route: 2 x pairs connections)');
  console.log('noise = most cores other processes used during any run of the point (>0.2: suspect)');
}

// ---- every server under both generators (issue 14) ----
// Per echo and route point, per server and generator (chatd-bench, uWebSockets' load_test):
// the rate over the quiet seconds, how much was dropped as noisy, the server's CPU,
// messages per server-CPU second, latency where the generator measures it, and the ratios
// to the floor (chatd-floor under chatd-bench) and to uWebSockets' EchoServer under the same
// generator, by rate and by messages per server-CPU second.
{
  const c2 = (v) => (Number.isNaN(v) ? '-' : v.toFixed(2));
  const medOf = (xs) => median(xs.filter((x) => x != null && !Number.isNaN(x)));
  const sum = (rs, k) => rs.reduce((a, r) => a + (r[k] ?? 0), 0);
  const perCpu = (r) => r.msgs_per_server_cpu_s ?? (r.server_cpu > 0 ? r.rate / r.server_cpu : NaN);
  const by = new Map(); // point -> "target\tgen" -> [results]
  for (const r of rows) {
    if (!/^(echo|route) \d/.test(r.point)) continue;
    const k = `${r.target}\t${r.gen ?? 'chatd-bench'}`;
    if (!by.has(r.point)) by.set(r.point, new Map());
    const m = by.get(r.point);
    if (!m.has(k)) m.set(k, []);
    m.get(k).push(r);
  }
  const ratio = (a, b) => (Number.isNaN(a) || Number.isNaN(b) || !b ? '-' : (a / b).toFixed(2) + 'x');
  const gtable = [['point', 'server', 'generator', 'rate', 'dropped s', 'server cpu', 'msgs/cpu-s', 'p50 us',
    'p99 us', 'x floor', 'x uws', 'cpu-eff x floor', 'cpu-eff x uws']];
  let anyLt = false;
  for (const [point, m] of by) {
    const floor = m.get('floor\tchatd-bench');
    const fRate = med(floor, 'rate'), fEff = floor ? medOf(floor.map(perCpu)) : NaN;
    for (const [k, rs] of m) {
      const [target, gen] = k.split('\t');
      if (gen === 'load_test') anyLt = true;
      const u = m.get(`uws\t${gen}`);
      const rate = med(rs, 'rate'), eff = medOf(rs.map(perCpu));
      const kept = sum(rs, 'secs_kept'), dropped = sum(rs, 'secs_dropped');
      const isFloor = target === 'floor', isUws = target === 'uws';
      gtable.push([point, target, gen, cell(rs), rs.some((r) => r.spans != null) ?
        `${dropped.toFixed(0)}/${(kept + dropped).toFixed(0)}${kept > 0 ? '' : '*'}` : '-', c2(med(rs, 'server_cpu')), fmt(eff),
      fmt(med(rs, 'lat_p50_us')), fmt(med(rs, 'lat_p99_us')), isFloor ? '-' : ratio(rate, fRate),
      isUws || !u ? '-' : ratio(rate, med(u, 'rate')), isFloor ? '-' : ratio(eff, fEff),
      isUws || !u ? '-' : ratio(eff, medOf(u.map(perCpu)))]);
    }
  }
  if (gtable.length > 1) {
    console.log('');
    printTable(gtable);
    console.log('\ngenerators: rate = round trips/s (echo) or events delivered/s (route) over the quiet seconds, ' +
      'median [min-max] over the reps; dropped s = seconds left out because other processes used more than ' +
      'QUIET_CORES cores in them / seconds measured, summed over the reps (load_test: whole 4-s intervals; ' +
      '* = every one was noisy and the rate is over all of them); ' +
      'server cpu = cores, /proc/<pid>/stat over the window; msgs/cpu-s = messages per second of server CPU in the ' +
      'quiet seconds; p50/p99 = round-trip (echo) or one-way (route) latency, chatd-bench only (load_test ' +
      'measures none); x floor = rate / chatd-floor under chatd-bench; x uws = rate / uWebSockets\' EchoServer ' +
      'under the same generator; cpu-eff = the same ratios of msgs/cpu-s' +
      (anyLt ? '; load_test = uWebSockets\' benchmarks/load_test (binary frames, 1 in flight per connection)' : ''));
  }
}

// ---- cluster (issue 9) ----
// Goals: two-nodes route >= 0.5x one-node route; two-nodes route@half p99 < 5 ms.
const cpu2 = (v) => (Number.isNaN(v) ? '-' : v.toFixed(2));
const ctable = [['point', 'config', 'rate', 'p50 us', 'p99 us', 'chatd cpu (a+b)', 'redis cpu', 'server side',
  'noise', 'vs one-node', 'goal']];
for (const [point, t] of points) {
  if (!isCluster(point)) continue;
  for (const [target, rs] of t) {
    const rate = med(rs, 'rate');
    const a = med(rs, 'server_cpu'), b = med(rs, 'nodeb_cpu');
    const chatdCpu = Number.isNaN(b) ? cpu2(a) : `${cpu2(a + b)} (${cpu2(a)}+${cpu2(b)})`;
    const redis = med(rs, 'redis_cpu');
    const side = (Number.isNaN(a) ? 0 : a) + (Number.isNaN(b) ? 0 : b) + (Number.isNaN(redis) ? 0 : redis);
    const base = t.get(target.replace(/two-nodes$/, 'one-node'));
    const rel = /two-nodes$/.test(target) && base ? rate / med(base, 'rate') : NaN;
    let goal = '';
    if (/^cluster route \d/.test(point) && /two-nodes$/.test(target))
      goal = Number.isNaN(rel) ? '? >=0.5x one-node' : `${rel >= 0.5 ? 'ok' : 'MISS'} >=0.5x one-node`;
    if (/^cluster route@half/.test(point) && /two-nodes$/.test(target)) {
      const p99 = med(rs, 'lat_p99_us');
      goal = Number.isNaN(p99) ? '? p99<5ms' : `${p99 < 5000 ? 'ok' : 'MISS'} p99<5ms`;
    }
    if (/^cluster conns/.test(point)) {
      ctable.push([point, target, `${fmt(med(rs, 'bytes_per_conn'))} B/conn RSS, ` +
        `${fmt(med(rs, 'anon_bytes_per_conn'))} anon`, '-', fmt(med(rs, 'ready_p99_us')), cpu2(a), '-', '-',
        noise(new Map([[target, rs]])), '-', rs.every((r) => r.open === r.n) ? 'all open' : 'NOT all open']);
      continue;
    }
    ctable.push([point, target, cell(rs), fmt(med(rs, 'lat_p50_us')), fmt(med(rs, 'lat_p99_us')), chatdCpu,
      cpu2(redis), cpu2(side), noise(new Map([[target, rs]])), Number.isNaN(rel) ? '-' : rel.toFixed(2) + 'x',
      goal]);
  }
}
if (ctable.length > 1) {
  if (table.length > 1) console.log('');
  printTable(ctable);
  console.log('\ncluster: single = chatd without --redis; one-node = both ends of every pair (every member) ' +
    'on cluster node a, node b idle; two-nodes = one end of every pair (every other member) on node b. ' +
    'rate: route = events/s delivered, route@half (route@25%) = open loop at half (a quarter) of that config\'s ' +
    'saturation, ' +
    'fanout = deliveries/s (fanout-spread: broadcasts round-robin over CLUSTER_API_CONNS API connections ' +
    'instead of pipelined on one); p50/p99 = one-way (route) or delivery (fanout) latency; ' +
    'cpu in cores over the measured window (redis from /proc/<pid>/stat); server side = nodes + Redis ' +
    '(all on one core unless REDIS_CPU says otherwise); conns p99 = connect->init');
}
const extra = [];
for (const [point, t] of points) {
  if (isCluster(point)) continue;
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

// run.sh tls-deflate (issue 12): per point and configuration (plain, tls, deflate) the
// medians over the rounds with [min-max], the server's CPU per message or delivery, and the
// goals: TLS echo >= 0.7x plain, deflate fan-out server CPU per delivery <= 1.3x plain.
function tlsDeflate(rs) {
  const med = (xs) => {
    const s = xs.filter((x) => x != null && !Number.isNaN(x)).sort((a, b) => a - b);
    return s.length ? s[(s.length - 1) >> 1] : NaN;
  };
  const f = (v, d = 0) => (v == null || Number.isNaN(v) ? '-' : v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
  const range = (xs, d = 0) => {
    const v = xs.filter((x) => x != null && !Number.isNaN(x));
    return v.length ? `${f(med(v), d)} [${f(Math.min(...v), d)}-${f(Math.max(...v), d)}]` : '-';
  };
  // server CPU us per message (echo: round trip, route: delivered event, fanout: delivery)
  const us = (r) => (r.server_us_per_delivery ?? (r.server_cpu != null && r.rate ? (r.server_cpu * 1e6) / r.rate : NaN));
  const bus = (r) => (r.bench_cpu != null && r.rate ? (r.bench_cpu * 1e6) / r.rate : NaN);
  const by = new Map();
  for (const r of rs) {
    const k = `${r.point}\t${r.target}`;
    (by.get(k) || by.set(k, []).get(k)).push(r);
  }
  const out = [['point', 'config', 'rate/s median [min-max]', 'p50 us', 'p99 us', 'server us/msg [min-max]',
    'bench us/msg', 'server cpu', 'bench cpu', 'noise']];
  const mem = [['point', 'config', 'RSS B/conn median [min-max]', 'anon B/conn', 'conns/s', 'open']];
  for (const [k, g] of by) {
    const [point, target] = k.split('\t');
    if (/^td conns/.test(point)) {
      mem.push([point, target, range(g.map((r) => r.bytes_per_conn)), range(g.map((r) => r.anon_bytes_per_conn)),
        f(med(g.map((r) => r.rate))), g.every((r) => r.open === r.n) ? 'all' : 'NOT all']);
      continue;
    }
    if (/^td idle_mem/.test(point)) {
      mem.push([point, target, range(g.map((r) => r.rss_per_conn)), range(g.map((r) => r.anon_per_conn)), '-',
        g[0].deflate_offered ? `deflate agreed ${Math.min(...g.map((r) => r.deflate_agreed))}` : 'all']);
      continue;
    }
    out.push([point, target, range(g.map((r) => r.rate)), f(med(g.map((r) => r.lat_p50_us))),
      f(med(g.map((r) => r.lat_p99_us))), range(g.map(us), 2), f(med(g.map(bus)), 2),
      f(med(g.map((r) => r.server_cpu)), 2), f(med(g.map((r) => r.bench_cpu)), 2),
      f(Math.max(...g.map((r) => r.other_cpu ?? 0)), 2)]);
  }
  const table = (t) => {
    const w = t[0].map((_, i) => Math.max(...t.map((r) => r[i].length)));
    for (const r of t) console.log(r.map((x, i) => x.padEnd(w[i])).join('  ').trimEnd());
  };
  table(out);
  console.log('');
  if (mem.length > 1) {
    table(mem);
    console.log('');
  }
  // paired ratios: b over a in the same round (rep), and the ratio of the medians
  const ratio = (point, a, b, key) => {
    const A = by.get(`${point}\t${a}`) || [], B = by.get(`${point}\t${b}`) || [];
    const pairs = [];
    for (const x of B) {
      const y = A.find((r) => r.rep === x.rep);
      if (y && key(y) > 0) pairs.push(key(x) / key(y));
    }
    return { paired: pairs, medians: med(B.map(key)) / med(A.map(key)) };
  };
  const lines = [];
  const pts = [...new Set(rs.map((r) => r.point))];
  for (const p of pts.filter((p) => /^td (echo|route)/.test(p))) {
    const q = ratio(p, 'plain', 'tls', (r) => r.rate);
    const c = ratio(p, 'plain', 'tls', us);
    const goal = /^td echo/.test(p) ? (med(q.paired) >= 0.7 ? '  goal >= 0.7x: MET' : '  goal >= 0.7x: NOT MET') : '';
    lines.push(`${p}: tls/plain rate ${f(med(q.paired), 2)}x [${f(Math.min(...q.paired), 2)}-${f(Math.max(...q.paired), 2)}] ` +
      `(paired by round; ratio of medians ${f(q.medians, 2)}x), server us/msg tls/plain ${f(med(c.paired), 2)}x${goal}`);
  }
  for (const p of pts.filter((p) => /^td fanout/.test(p))) {
    const c = ratio(p, 'plain', 'deflate', us);
    const q = ratio(p, 'plain', 'deflate', (r) => r.rate);
    const wb = ratio(p, 'plain', 'deflate', (r) => r.wire_bytes_per_delivery);
    const d = by.get(`${p}\tdeflate`) || [];
    const pl = by.get(`${p}\tplain`) || [];
    lines.push(`${p}: deflate/plain server us/delivery ${f(med(c.paired), 2)}x [${f(Math.min(...c.paired), 2)}-` +
      `${f(Math.max(...c.paired), 2)}] (paired; ratio of medians ${f(c.medians, 2)}x)  goal <= 1.3x: ` +
      `${med(c.paired) <= 1.3 ? 'MET' : 'NOT MET'}`);
    lines.push(`${p}: deflate/plain deliveries/s ${f(med(q.paired), 2)}x; wire bytes/delivery plain ` +
      `${f(med(pl.map((r) => r.wire_bytes_per_delivery)), 1)}, deflate ${f(med(d.map((r) => r.wire_bytes_per_delivery)), 1)} ` +
      `(${f(med(wb.paired), 2)}x); compressed/plain payload ${f(med(d.map((r) => r.deflate_ratio)), 3)}; ` +
      `members with deflate ${f(Math.min(...d.map((r) => r.deflate_conns ?? 0)))}/${d[0]?.members ?? '-'}; ` +
      `uncompressed messages ${d.reduce((a, r) => a + (r.uncompressed_msgs ?? 0), 0)}; ` +
      `inflated ${f(med(d.map((r) => r.inflated / Math.max(1, r.compressed_msgs)) ), 4)} of compressed`);
  }
  for (const l of lines) console.log(l);
  console.log(`medians over ${Math.max(...[...by.values()].map((g) => g.length))} rounds; server us/msg = ` +
    'server CPU time over the window / messages (echo: round trips, route: delivered events, fanout: deliveries)');
}
