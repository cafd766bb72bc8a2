// socket.js: the WebSocket to chatd's /ws. Connects (ws: or wss: as the page),
// waits for {"type":"init","client_id","bind_nonce"}, binds the user through
// `bind` (POST /chat/bind with both), then reports online. After any close it reconnects with
// exponential backoff and jitter, and binds again.
//
// A dropped network often closes nothing: no FIN arrives, and the browser's socket stays OPEN
// for minutes. So a bound socket that has heard nothing for a few seconds sends the
// application ping ({"type":"ping"}, answered at once by the gateway with {"type":"pong"});
// when no frame at all comes back within PONG_TIMEOUT_MS the socket is dropped and the page
// shows it is offline (within PING_IDLE_MS + PONG_TIMEOUT_MS, 6 to 7 s, on a visible page).
// probe() sends that ping at once (a message just sent, the tab shown again), and
// networkLost() drops the socket without waiting when the browser says it went offline.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const INIT_TIMEOUT_MS = 10000;
const PING_IDLE_MS = 3000; // a visible page pings after this long without a frame
const PING_IDLE_HIDDEN_MS = 25000; // a hidden one less often (its timers are throttled anyway)
const PONG_TIMEOUT_MS = 3000; // no frame this long after a ping: the connection is dead
const HEARTBEAT_TICK_MS = 500;

export function socketUrl(path = '/ws') {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}

/** Delay before reconnect attempt n (0-based): half fixed, half random ("equal jitter"). */
export function backoffDelay(attempt, base = BASE_DELAY_MS, max = MAX_DELAY_MS) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export class ChatSocket {
  /**
   * @param {object} o
   * @param {string} o.url
   * @param {(clientId: string, bindNonce: string) => Promise<void>} o.bind  rejects with {fatal: true} to stop reconnecting
   * @param {(clientId: string) => void} o.onOnline
   * @param {() => void} o.onOffline
   * @param {(msg: object) => void} o.onMessage
   * @param {(state: string, info: object) => void} o.onState  'connecting' | 'binding' | 'online' | 'waiting' | 'stopped'
   */
  constructor(o) {
    this.o = o;
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

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.drop(ws, 1000, 'bye');
    this.setState('stopped');
  }

  /** Reconnects at once when waiting (network back, tab shown again, "Retry now"). */
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
    let ws;
    try {
      ws = new WebSocket(this.o.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.lastHeard = Date.now();
    this.initTimer = setTimeout(() => {
      if (this.ws === ws && !this.clientId) this.drop(ws, 4000, 'no init');
    }, INIT_TIMEOUT_MS);
    ws.onmessage = (ev) => this.receive(ws, ev);
    ws.onclose = () => this.closed(ws);
    ws.onerror = () => {};
  }

  async receive(ws, ev) {
    if (this.ws !== ws) return;
    this.lastHeard = Date.now();
    this.pingSentAt = 0;
    if (typeof ev.data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
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
        if (e && e.fatal) {
          this.stop();
        } else {
          this.drop(ws, 4001, 'bind failed');
        }
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
        if (now - this.pingSentAt > PONG_TIMEOUT_MS) this.drop(ws, 4002, 'no pong');
        return;
      }
      const idle = document.visibilityState === 'hidden' ? PING_IDLE_HIDDEN_MS : PING_IDLE_MS;
      if (now - this.lastHeard >= idle) this.probe();
    }, HEARTBEAT_TICK_MS);
  }

  /** Pings now (unless a ping is already waiting, or a frame came within minSilenceMs). */
  probe(minSilenceMs = 0) {
    if (!this.online || this.pingSentAt || Date.now() - this.lastHeard < minSilenceMs) return;
    if (this.send({ type: 'ping' })) this.pingSentAt = Date.now();
  }

  /** The browser says the network is gone: drop the socket now rather than at the next ping. */
  networkLost() {
    if (this.ws) this.drop(this.ws, 4004, 'offline');
  }

  /** Sends a JSON message if the socket is bound; false otherwise. */
  send(obj) {
    const ws = this.ws;
    if (!this.online || !ws || ws.readyState !== WebSocket.OPEN) return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** Forgets ws at once (a dead TCP connection may take long to report its close). */
  drop(ws, code, reason) {
    if (!ws) return;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closed */
    }
    this.closed(ws);
  }

  closed(ws) {
    if (this.ws !== ws) return;
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
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.nextAttemptAt = Date.now() + delay;
    this.setState('waiting', { delay, at: this.nextAttemptAt, attempt: this.attempt });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
