// connection.js: the socket to chatd's /ws, through the adapter's connect().
// Waits for {"type":"init","client_id","bind_nonce"}, binds through the
// caller's bind (POST /chat/bind with both), then reports online. After any
// close it reconnects with exponential backoff and jitter, and binds again.
//
// A dropped network often closes nothing: no FIN arrives, and the socket
// stays open for minutes. So a bound socket that has heard nothing for a few
// seconds sends the application ping ({"type":"ping"}, answered at once by
// the gateway with {"type":"pong"}); when no frame at all comes back within
// pongTimeoutMs the socket is dropped and the client is offline (within
// pingIdleMs + pongTimeoutMs, 6 to 7 s, while visible). probe() sends that
// ping at once (a message just sent, the app shown again), and networkLost()
// drops the socket without waiting when the platform says it went offline.

/**
 * What adapter.connect returns: a socket already connecting.
 * @typedef {object} SocketLike
 * @property {(text: string) => boolean} send  false when it could not be queued
 * @property {(code?: number, reason?: string) => void} close
 *
 * The handlers adapter.connect calls (each at most as the platform reports it).
 * @typedef {object} SocketHandlers
 * @property {() => void} onOpen
 * @property {(text: string) => void} onMessage  text frames only
 * @property {(code: number, reason: string) => void} onClose
 * @property {(err: any) => void} onError
 */

export const DEFAULT_TIMING = Object.freeze({
  baseDelayMs: 500,
  maxDelayMs: 15000,
  initTimeoutMs: 10000,
  pingIdleMs: 3000, // a visible client pings after this long without a frame
  pingIdleHiddenMs: 25000, // a hidden one less often (its timers are throttled anyway)
  pongTimeoutMs: 3000, // no frame this long after a ping: the connection is dead
  heartbeatTickMs: 500,
});

/** Delay before reconnect attempt n (0-based): half fixed, half random ("equal jitter"). */
export function backoffDelay(attempt, base = DEFAULT_TIMING.baseDelayMs, max = DEFAULT_TIMING.maxDelayMs, random = Math.random) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export class Connection {
  /**
   * @param {object} o
   * @param {string} o.url
   * @param {(url: string, h: SocketHandlers) => SocketLike} o.connect  the adapter's
   * @param {(clientId: string, bindNonce: string) => Promise<void>} o.bind  rejects with {fatal: true} to stop reconnecting
   * @param {(clientId: string) => void} o.onOnline
   * @param {() => void} o.onOffline
   * @param {(msg: object) => void} o.onMessage
   * @param {(state: string, info: object) => void} o.onState  'connecting' | 'binding' | 'online' | 'waiting' | 'stopped'
   * @param {() => boolean} [o.visible]
   * @param {Partial<typeof DEFAULT_TIMING>} [o.timing]
   */
  constructor(o) {
    this.o = o;
    this.t = { ...DEFAULT_TIMING, ...(o.timing || {}) };
    this.ws = null;
    this.clientId = null;
    this.online = false;
    this.stopped = true;
    this.attempt = 0;
    this.retryTimer = 0;
    this.initTimer = 0;
    this.pingTimer = 0;
    this.lastHeard = 0;
    this.pingSentAt = 0; // a ping waiting for its answer (any frame answers it), or 0
    this.nextAttemptAt = 0;
    this.state = 'stopped';
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(info = {}) {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.drop(this.ws, 1000, 'bye');
    this.setState('stopped', info);
  }

  /** Reconnects at once when waiting (network back, app shown again, "Retry now"). */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  setState(state, info = {}) {
    this.state = state;
    if (this.o.onState) this.o.onState(state, info);
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.setState('connecting', { attempt: this.attempt });
    const box = { ws: null };
    const handlers = {
      onOpen: () => {},
      onMessage: (text) => this.receive(box.ws, text),
      onClose: () => this.closed(box.ws),
      onError: () => {},
    };
    let ws;
    try {
      ws = this.o.connect(this.o.url, handlers);
    } catch {
      this.scheduleReconnect();
      return;
    }
    box.ws = ws;
    this.ws = ws;
    this.lastHeard = Date.now();
    this.initTimer = setTimeout(() => {
      if (this.ws === ws && !this.clientId) this.drop(ws, 4000, 'no init');
    }, this.t.initTimeoutMs);
  }

  async receive(ws, text) {
    if (!ws || this.ws !== ws) return;
    this.lastHeard = Date.now();
    this.pingSentAt = 0;
    if (typeof text !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'init' && typeof msg.client_id === 'string') {
      clearTimeout(this.initTimer);
      this.clientId = msg.client_id;
      this.setState('binding');
      try {
        await this.o.bind(msg.client_id, msg.bind_nonce);
      } catch (e) {
        if (this.ws !== ws) return;
        if (e && e.fatal) this.stop({ error: e });
        else this.drop(ws, 4001, 'bind failed');
        return;
      }
      if (this.ws !== ws) return;
      this.online = true;
      this.attempt = 0;
      this.startHeartbeat(ws);
      this.setState('online');
      this.o.onOnline(msg.client_id);
      return;
    }
    if (msg.type === 'pong') return;
    if (this.online) this.o.onMessage(msg);
  }

  startHeartbeat(ws) {
    clearInterval(this.pingTimer);
    this.pingSentAt = 0;
    this.pingTimer = setInterval(() => {
      if (this.ws !== ws) return;
      const now = Date.now();
      if (this.pingSentAt) {
        if (now - this.pingSentAt > this.t.pongTimeoutMs) this.drop(ws, 4002, 'no pong');
        return;
      }
      const visible = this.o.visible ? this.o.visible() : true;
      const idle = visible ? this.t.pingIdleMs : this.t.pingIdleHiddenMs;
      if (now - this.lastHeard >= idle) this.probe();
    }, this.t.heartbeatTickMs);
  }

  /** Pings now (unless a ping is already waiting, or a frame came within minSilenceMs). */
  probe(minSilenceMs = 0) {
    if (!this.online || this.pingSentAt || Date.now() - this.lastHeard < minSilenceMs) return;
    if (this.send({ type: 'ping' })) this.pingSentAt = Date.now();
  }

  /** The platform says the network is gone: drop the socket now rather than at the next ping. */
  networkLost() {
    if (this.ws) this.drop(this.ws, 4004, 'offline');
  }

  /** Sends a JSON message if the socket is bound; false otherwise. */
  send(obj) {
    const ws = this.ws;
    if (!this.online || !ws) return false;
    try {
      return ws.send(JSON.stringify(obj)) !== false;
    } catch {
      return false;
    }
  }

  /** Forgets ws at once (a dead TCP connection may take long to report its close). */
  drop(ws, code, reason) {
    if (!ws) return;
    this.closed(ws);
    try {
      ws.close(code, reason);
    } catch {
      /* already closed */
    }
  }

  closed(ws) {
    if (!ws || this.ws !== ws) return;
    this.ws = null;
    this.clientId = null;
    clearTimeout(this.initTimer);
    clearInterval(this.pingTimer);
    this.pingSentAt = 0;
    const wasOnline = this.online;
    this.online = false;
    if (wasOnline) this.o.onOffline();
    if (!this.stopped) this.scheduleReconnect();
  }

  scheduleReconnect() {
    const delay = backoffDelay(this.attempt, this.t.baseDelayMs, this.t.maxDelayMs);
    this.attempt += 1;
    this.nextAttemptAt = Date.now() + delay;
    this.setState('waiting', { delay, at: this.nextAttemptAt, attempt: this.attempt });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
