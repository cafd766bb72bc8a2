// The victim of an abuse test: an ordinary signed-in user whose socket sends
// {"type":"ping"} every few milliseconds and times the {"type":"pong"}, while
// an attack runs beside it. The test prints the victim's p50/p99 (so CI logs
// keep the latency under each attack) and asserts a bound on them.
//
// Helpers come from the integration suite (same harness, same ws client).
import { register, ChatSocket } from '../../integration/lib/chat.mjs';
import { sleep } from '../../integration/lib/server.mjs';

export { sleep };

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length));
  return sorted[i];
}

/** Summary of RTT samples in ms: {n, lost, p50, p99, max}. */
export function summarize(samples, lost = 0) {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, lost, p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
}

export function fmt(name, st) {
  const f = (x) => (Number.isFinite(x) ? x.toFixed(2) : String(x));
  return `${name}: n=${st.n} lost=${st.lost} p50=${f(st.p50)} ms p99=${f(st.p99)} ms max=${f(st.max)} ms`;
}

/**
 * Starts a victim on srv: registers a user, binds a socket, and pings it
 * every intervalMs (one ping in flight at a time; a pong not back within
 * timeoutMs counts as lost). stop() returns the summary.
 */
export async function startVictim(srv, { name = 'victim' + Date.now().toString(36), intervalMs = 10, timeoutMs = 2000 } = {}) {
  const user = await register(srv, name.slice(0, 32));
  const sock = await ChatSocket.bound(srv, user);
  const probe = timedProbes(sock, {
    intervalMs,
    timeoutMs,
    send: () => sock.sendJson({ type: 'ping' }),
    isAnswer: (m) => m.type === 'pong',
  });
  return { user, sock, ...probe };
}

/**
 * The loop every victim runs on its socket: send(n) one probe, wait for the
 * message isAnswer(m, n) accepts (an error it throws with abortVictim set
 * ends the loop and rejects stop()), time it,
 * pause intervalMs, again. An answer not back within timeoutMs counts as
 * lost. Returns {snapshot(), stop()}: the summary so far, and stop + summary.
 */
export function timedProbes(sock, { intervalMs, timeoutMs, send, isAnswer }) {
  const samples = [];
  let lost = 0;
  let running = true;
  const loop = (async () => {
    for (let n = 1; running; n++) {
      const t0 = process.hrtime.bigint();
      send(n);
      let answered = false;
      try {
        while (!answered) {
          const m = await sock.next(timeoutMs);
          answered = isAnswer(m, n); // a throw here is not a lost probe: it aborts
        }
      } catch (e) {
        if (!answered && e && e.abortVictim) throw e;
        lost++;
        if (sock.closed) break;
      }
      if (answered) samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await sleep(intervalMs);
    }
  })();
  return {
    /** Samples so far (a copy). */
    snapshot: () => summarize(samples, lost),
    async stop() {
      running = false;
      await loop;
      sock.terminate();
      return summarize(samples, lost);
    },
  };
}

/** The victim's baseline: a few hundred pings with nothing else going on. */
export async function baseline(srv, ms = 1000) {
  const v = await startVictim(srv, { name: 'base' + Date.now().toString(36) });
  await sleep(ms);
  return v.stop();
}

/** Resident set size of a process in bytes, from /proc. */
export async function rssBytes(pid) {
  const fs = await import('node:fs/promises');
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}
