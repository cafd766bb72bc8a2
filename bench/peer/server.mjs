// server.mjs: the comparison peer for chatd-bench, an idiomatic Node.js server on the `ws`
// package speaking the part of chatd's protocol the benchmark uses: `init` on /ws, the
// `event` route between uids, groups, an echo path, and the server API methods bind_uid,
// join_group, send_to_group and send_to_uid. Nothing is stored. It exists so that
// bench/run.sh can put chatd's numbers next to those of a common, reasonable alternative.
//
// Usage: node server.mjs [--listen 127.0.0.1:8090] [--api-secret S] [--ws-path /ws]
//                        [--echo-path /echo]
import http from 'node:http';
import crypto from 'node:crypto';
import { WebSocketServer } from 'ws';

const opt = { listen: '127.0.0.1:8090', 'api-secret': '', 'ws-path': '/ws', 'echo-path': '/echo' };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in opt) || i + 1 >= process.argv.length) {
    console.error(`usage: node server.mjs [--listen HOST:PORT] [--api-secret S] [--ws-path P] [--echo-path P]`);
    process.exit(2);
  }
  opt[k] = process.argv[i + 1];
}
const [host, port] = [opt.listen.slice(0, opt.listen.lastIndexOf(':')), +opt.listen.split(':').pop()];

const clients = new Map(); // client_id -> ws
const uids = new Map(); // uid -> Set<ws>
const groups = new Map(); // group -> Set<ws>

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const echo = new WebSocketServer({ noServer: true, perMessageDeflate: false });

const uidValue = (uid) => (/^(0|[1-9][0-9]{0,15})$/.test(uid) ? Number(uid) : uid);
const add = (map, key, ws) => (map.get(key) ?? map.set(key, new Set()).get(key)).add(ws);
const drop = (map, key, ws) => {
  const set = map.get(key);
  if (set && set.delete(ws) && set.size === 0) map.delete(key);
};

wss.on('connection', (ws) => {
  ws.id = crypto.randomBytes(16).toString('base64url');
  ws.uid = null;
  ws.groups = new Set();
  clients.set(ws.id, ws);
  ws.send(JSON.stringify({ type: 'init', client_id: ws.id }));
  ws.on('message', (raw, isBinary) => {
    if (isBinary) return ws.close(1003);
    let m;
    try {
      m = JSON.parse(raw);
    } catch {
      return ws.send('{"type":"error","code":"bad_json","msg":"not JSON"}');
    }
    if (m.type === 'ping') return ws.send('{"type":"pong"}');
    if (m.type !== 'event') return ws.send('{"type":"error","code":"unknown_type","msg":"type"}');
    if (ws.uid === null) return ws.send('{"type":"error","code":"not_bound","msg":"bind first"}');
    const out = JSON.stringify({ type: 'event', from_id: uidValue(ws.uid), data: m.data });
    for (const peer of uids.get(String(m.to_id)) ?? []) peer.send(out);
  });
  ws.on('close', () => {
    clients.delete(ws.id);
    if (ws.uid !== null) drop(uids, ws.uid, ws);
    for (const g of ws.groups) drop(groups, g, ws);
  });
});
echo.on('connection', (ws) => ws.on('message', (m, isBinary) => ws.send(m, { binary: isBinary })));

const payload = (data) => (typeof data === 'string' ? data : JSON.stringify(data));
const list = (v) => (Array.isArray(v) ? v : [v]).map(String);
const api = {
  bind_uid({ client_id, uid }) {
    const ws = clients.get(client_id);
    if (!ws) return [404, 'not_found'];
    if (ws.uid !== null) drop(uids, ws.uid, ws);
    ws.uid = String(uid);
    add(uids, ws.uid, ws);
    return true;
  },
  join_group({ client_id, group }) {
    const ws = clients.get(client_id);
    if (!ws) return [404, 'not_found'];
    for (const g of list(group)) add(groups, g, ws), ws.groups.add(g);
    return true;
  },
  send_to_group({ group, data }) {
    const out = payload(data);
    let n = 0;
    for (const g of list(group)) for (const ws of groups.get(g) ?? []) ws.send(out), n++;
    return n;
  },
  send_to_uid({ uid, data }) {
    const out = payload(data);
    let n = 0;
    for (const u of list(uid)) for (const ws of uids.get(u) ?? []) ws.send(out), n++;
    return n;
  },
};

const reply = (res, code, body) => {
  const s = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(s) });
  res.end(s);
};
const fail = (res, code, err) => reply(res, code, { status: false, msg: err, code: err });

const server = http.createServer((req, res) => {
  const m = /^\/gateway\/([a-z_]+)$/.exec(req.url);
  if (!m) return fail(res, 404, 'not_found');
  if (req.method !== 'POST') return fail(res, 405, 'method_not_allowed');
  if (!opt['api-secret']) return fail(res, 403, 'api_disabled');
  if (req.headers.authorization !== `Bearer ${opt['api-secret']}`) return fail(res, 401, 'unauthorized');
  if (!Object.hasOwn(api, m[1])) return fail(res, 404, 'unknown_method');
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks));
    } catch {
      return fail(res, 400, 'bad_json');
    }
    const r = api[m[1]](body ?? {});
    if (Array.isArray(r)) return fail(res, r[0], r[1]);
    reply(res, 200, { status: true, msg: 'ok', data: r });
  });
});
server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  const target = path === opt['ws-path'] ? wss : opt['echo-path'] && path === opt['echo-path'] ? echo : null;
  if (!target) return socket.destroy();
  target.handleUpgrade(req, socket, head, (ws) => target.emit('connection', ws, req));
});
server.keepAliveTimeout = 60000;
server.listen(port, host, () => console.error(`peer listening on ${host}:${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
