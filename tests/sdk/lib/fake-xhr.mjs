// fake-xhr.mjs: just enough of the browser's XMLHttpRequest, on node:http, for
// the browser adapter's upload: open, setRequestHeader, timeout, upload
// "progress" events (lengthComputable, loaded, total) as the body is written
// in chunks, and load/error/timeout/abort; status and responseText.
import http from 'node:http';

const CHUNK = 16 * 1024;

class Target {
  constructor() {
    this.listeners = new Map();
  }

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }

  dispatch(type, ev = {}) {
    for (const fn of this.listeners.get(type) || []) fn({ type, ...ev });
  }
}

export class FakeXMLHttpRequest extends Target {
  constructor() {
    super();
    this.upload = new Target();
    this.headers = {};
    this.timeout = 0;
    this.responseType = '';
    this.status = 0;
    this.responseText = '';
    this.readyState = 0;
  }

  open(method, url) {
    this.method = method;
    this.url = url;
    this.readyState = 1;
  }

  setRequestHeader(k, v) {
    this.headers[k] = v;
  }

  abort() {
    if (this.aborted || this.readyState === 4) return;
    this.aborted = true;
    if (this.req) this.req.destroy();
    this.readyState = 4;
    this.dispatch('abort');
  }

  async send(body) {
    let buf;
    if (body === undefined || body === null) buf = Buffer.alloc(0);
    else if (typeof body === 'string') buf = Buffer.from(body);
    else if (typeof Blob !== 'undefined' && body instanceof Blob) buf = Buffer.from(await body.arrayBuffer());
    else buf = Buffer.from(body);
    if (this.aborted) return;
    const u = new URL(this.url);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: this.method, headers: { ...this.headers, 'Content-Length': buf.length } });
    this.req = req;
    let done = false;
    const finish = (type) => {
      if (done || this.aborted) return;
      done = true;
      clearTimeout(timer);
      this.readyState = 4;
      this.dispatch(type);
    };
    const timer = this.timeout ? setTimeout(() => {
      req.destroy();
      finish('timeout');
    }, this.timeout) : 0;
    req.on('error', () => finish('error'));
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        this.status = res.statusCode;
        this.responseText = text;
        finish('load');
      });
    });
    // The body in chunks, a progress event as each is handed to the socket.
    let sent = 0;
    const writeNext = () => {
      if (sent >= buf.length) {
        req.end();
        return;
      }
      const part = buf.subarray(sent, sent + CHUNK);
      req.write(part, () => {
        sent += part.length;
        this.upload.dispatch('progress', { lengthComputable: true, loaded: sent, total: buf.length });
        writeNext();
      });
    };
    writeNext();
  }
}
