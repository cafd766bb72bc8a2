// Worker thread of bind_flood.test.mjs: sockets from one source address that
// bind with random tokens, one bind after another, until the server closes
// them (or after 10 binds), then reconnect. Runs off the test's main thread so that the victims'
// timings there measure the server, not the attacker's own JavaScript.
// workerData: {url, addr, sockets, connects, ms}; posts the stats when done.
import { parentPort, workerData } from 'node:worker_threads';
import crypto from 'node:crypto';
import { WsClient } from '../../integration/lib/ws.mjs';

const { port, addr, sockets, connects, ms } = workerData;
const srv = { wsUrl: (p = '/ws') => `ws://127.0.0.1:${port}${p}` };
const sleep = (t) => new Promise((r) => setTimeout(r, t));
const token = () => crypto.randomBytes(32).toString('base64url');
const st = { sockets: 0, connectFailed: 0, codes: {}, closes: {} };
const deadline = Date.now() + ms;
const BINDS_PER_SOCKET = 10; // a server that never closes the socket gets this many

async function one(k) {
  await sleep((k * ms) / sockets / connects); // spread the connects over the attack
  for (let i = 0; i < connects && Date.now() < deadline; i++) {
    const started = Date.now();
    let ws;
    try {
      ws = await WsClient.open(srv, { wsOptions: { localAddress: addr } });
    } catch {
      st.connectFailed++;
      continue;
    }
    st.sockets++;
    for (let b = 0; b < BINDS_PER_SOCKET && !ws.closeInfo; b++) {
      ws.sendJson({ type: 'bind', token: token() });
      let m;
      try {
        m = await ws.nextJson(3000);
      } catch {
        break; // closed (or silent)
      }
      const key = m.code || m.type;
      st.codes[key] = (st.codes[key] || 0) + 1;
    }
    if (!ws.closeInfo) await Promise.race([ws.closed, sleep(2000)]);
    if (ws.closeInfo) {
      const key = `${ws.closeInfo.code} ${ws.closeInfo.reason}`;
      st.closes[key] = (st.closes[key] || 0) + 1;
    }
    ws.terminate();
    await sleep(Math.max(0, ms / connects - (Date.now() - started)));
  }
}

await Promise.all(Array.from({ length: sockets }, (_, k) => one(k)));
parentPort.postMessage(st);
