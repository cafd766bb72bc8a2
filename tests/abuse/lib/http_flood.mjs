// Worker thread: sends `count` identical JSON POSTs to url + path with a
// bearer token, `concurrency` at a time, and posts back {statuses, ms}.
// Off the test's main thread, so the victim's timings there measure the
// server, not the attacker's own JavaScript.
// workerData: {url, path, token, body, count, concurrency}.
import { parentPort, workerData } from 'node:worker_threads';

const { url, path, token, body, count, concurrency } = workerData;
const statuses = {};
let next = 0;
const t0 = Date.now();
async function one() {
  while (next < count) {
    next++;
    const r = await fetch(url + path, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    await r.arrayBuffer();
    statuses[r.status] = (statuses[r.status] || 0) + 1;
  }
}
await Promise.all(Array.from({ length: concurrency }, one));
parentPort.postMessage({ statuses, ms: Date.now() - t0 });
