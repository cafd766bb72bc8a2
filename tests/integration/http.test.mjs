// HTTP/1.1 behaviour: /healthz, keep-alive, Connection: close, HTTP/1.0,
// pipelining, limits (411, 413, 431), malformed requests (400 + close),
// timeouts (408, keep-alive idle), 405, and CORS.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep, staggered, WEB_FIXTURES } from './lib/server.mjs';
import { RawConn, rawRequest, json } from './lib/http.mjs';
import { WsClient } from './lib/ws.mjs';
import fsp from 'node:fs/promises';
import path from 'node:path';

const SECRET = 'http-test-secret';
const [srv, cors, corsAny] = await Promise.all([
  startServer({
    options: {
      'api-secret': SECRET,
      'max-header-size': 1024,
      'max-headers': 16,
      'max-body': 2048,
      'header-timeout': 1,
      'keepalive-timeout': 2,
    },
  }),
  startServer({ options: { 'api-secret': SECRET, 'cors-origins': 'http://good.example,http://also.example' } }),
  startServer({ options: { 'api-secret': SECRET, 'cors-origins': '*' } }),
]);
after(() => Promise.all([srv.stop(), cors.stop(), corsAny.stop()]));

// A WebSocket client that lives through every bad request of this file.
const bystander = await WsClient.open(srv);
after(() => bystander.terminate());

const get = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
const post = (path, body, extra = '') =>
  `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${SECRET}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

function assertEnvelopeError(res, status, code) {
  assert.equal(res.status, status, `HTTP status (body: ${res.body.toString().slice(0, 200)})`);
  const b = json(res);
  assert.equal(b.status, false, 'envelope status');
  assert.equal(b.code, code, 'envelope code');
  assert.equal(typeof b.msg, 'string');
  assert.ok(b.msg.length > 0, 'msg is not empty');
}

describe('GET /healthz', () => {
  test('answers the JSON envelope with connection counts', async () => {
    const { response: res } = await rawRequest(srv.port, get('/healthz'));
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] || '', /^application\/json\b/);
    const b = json(res);
    assert.equal(b.status, true);
    assert.equal(b.msg, 'ok');
    for (const k of ['connections', 'clients', 'uids', 'uptime_s']) {
      assert.ok(Number.isInteger(b.data[k]) && b.data[k] >= 0, `data.${k} is a non-negative integer: ${JSON.stringify(b.data)}`);
    }
    assert.equal(b.data.clients, 1, 'the bystander WebSocket is the one client');
    assert.equal(b.data.uids, 0);
    assert.ok(b.data.connections >= 1);
  });
});

describe('keep-alive and pipelining', () => {
  test('HTTP/1.1 keeps the connection open between requests', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(get('/healthz'));
      const r1 = await c.readResponse();
      assert.equal(r1.status, 200);
      assert.notEqual((r1.headers.connection || '').toLowerCase(), 'close');
      await sleep(200);
      assert.equal(c.ended, false, 'connection still open after the first response');
      await c.write(get('/a.txt'));
      const r2 = await c.readResponse();
      assert.equal(r2.status, 200);
      assert.equal(r2.body.toString(), WEB_FIXTURES['a.txt']);
    } finally {
      c.destroy();
    }
  });

  test('Connection: close is honoured', async () => {
    const { response, closed } = await rawRequest(srv.port, get('/healthz', 'Connection: close\r\n'), { waitClose: true });
    assert.equal(response.status, 200);
    assert.equal(closed, true, 'server closed the connection after the response');
  });

  test('HTTP/1.0 closes unless Connection: keep-alive', async () => {
    const { response, closed } = await rawRequest(srv.port, 'GET /healthz HTTP/1.0\r\n\r\n', { waitClose: true });
    assert.equal(response.status, 200);
    assert.equal(closed, true, 'HTTP/1.0 without keep-alive is closed');

    const c = await RawConn.connect(srv.port);
    try {
      await c.write('GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
      const r1 = await c.readResponse();
      assert.equal(r1.status, 200);
      assert.equal(r1.body.toString(), WEB_FIXTURES['a.txt']);
      await sleep(200);
      assert.equal(c.ended, false, 'HTTP/1.0 keep-alive connection stays open');
      await c.write('GET /b.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
      const r2 = await c.readResponse();
      assert.equal(r2.status, 200);
      assert.equal(r2.body.toString(), WEB_FIXTURES['b.txt']);
    } finally {
      c.destroy();
    }
  });

  test('pipelined requests are answered in order', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      // All in one write: GET, 404, POST with a body, HEAD, GET.
      await c.write(
        get('/a.txt') +
          get('/no-such-file.txt') +
          post('/gateway/get_all_client_id_count', '{}') +
          `HEAD /c.txt HTTP/1.1\r\nHost: x\r\n\r\n` +
          get('/b.txt'),
      );
      const r1 = await c.readResponse();
      assert.equal(r1.status, 200);
      assert.equal(r1.body.toString(), WEB_FIXTURES['a.txt']);
      const r2 = await c.readResponse();
      assert.equal(r2.status, 404);
      const r3 = await c.readResponse();
      assert.equal(r3.status, 200);
      assert.deepEqual(json(r3), { status: true, msg: 'ok', data: 1 });
      const r4 = await c.readResponse({ head: true });
      assert.equal(r4.status, 200);
      assert.equal(Number(r4.headers['content-length']), Buffer.byteLength(WEB_FIXTURES['c.txt']));
      const r5 = await c.readResponse();
      assert.equal(r5.status, 200);
      assert.equal(r5.body.toString(), WEB_FIXTURES['b.txt'], 'HEAD response carried no body');
    } finally {
      c.destroy();
    }
  });

  test('Connection: close in a pipeline: answered, then closed, later requests ignored', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(get('/a.txt', 'Connection: close\r\n') + get('/b.txt'));
      const r1 = await c.readResponse();
      assert.equal(r1.status, 200);
      assert.equal(r1.body.toString(), WEB_FIXTURES['a.txt']);
      assert.equal(await c.waitClosed(1500), true, 'closed after the Connection: close response');
      assert.equal(c.buf.length, 0, 'no response to the request after Connection: close');
    } finally {
      c.destroy();
    }
  });

  test('a GET with a body: the body is skipped and the next pipelined request parsed', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(`GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nGET /c.txt ` + get('/b.txt'));
      const r1 = await c.readResponse();
      assert.equal(r1.status, 200);
      assert.equal(r1.body.toString(), WEB_FIXTURES['a.txt']);
      const r2 = await c.readResponse();
      assert.equal(r2.status, 200);
      assert.equal(r2.body.toString(), WEB_FIXTURES['b.txt'], 'the body bytes were not taken for a request');
    } finally {
      c.destroy();
    }
  });

  test('a request sent one byte at a time is answered', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      for (const ch of Buffer.from(get('/a.txt'))) {
        await c.write(Buffer.from([ch]));
        await sleep(2);
      }
      const r = await c.readResponse();
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), WEB_FIXTURES['a.txt']);
    } finally {
      c.destroy();
    }
  });
});

describe('limits', () => {
  test('chunked request body is refused with 411', async () => {
    const req =
      `POST /gateway/get_all_client_id_count HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\n` +
      `Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`;
    const { response } = await rawRequest(srv.port, req);
    assertEnvelopeError(response, 411, 'length_required');
  });

  test('body larger than --max-body is refused with 413', async () => {
    const body = JSON.stringify({ data: 'x'.repeat(3000) });
    const { response } = await rawRequest(srv.port, post('/gateway/send_to_all', body));
    assertEnvelopeError(response, 413, 'too_large');
  });

  test('413 is answered from Content-Length, without waiting for the body', async () => {
    const req =
      `POST /gateway/send_to_all HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{"data":`;
    const { response } = await rawRequest(srv.port, req, { timeoutMs: 900 });
    assertEnvelopeError(response, 413, 'too_large');
  });

  test('a body of exactly --max-body bytes is accepted', async () => {
    const pad = 2048 - JSON.stringify({ data: '' }).length;
    const body = JSON.stringify({ data: 'y'.repeat(pad) });
    assert.equal(body.length, 2048);
    const { response } = await rawRequest(srv.port, post('/gateway/send_to_all', body, 'Connection: close\r\n'));
    assert.equal(response.status, 200, response.body.toString());
    assert.equal(json(response).data, 1, 'sent to the bystander');
    const m = await bystander.nextText();
    assert.equal(m, 'y'.repeat(pad));
  });

  test('headers larger than --max-header-size get 431', async () => {
    const { response } = await rawRequest(srv.port, get('/healthz', `X-Big: ${'b'.repeat(2000)}\r\n`));
    assertEnvelopeError(response, 431, 'headers_too_large');
  });

  test('a request line larger than --max-header-size gets 431', async () => {
    const { response } = await rawRequest(srv.port, get(`/healthz?${'q'.repeat(1500)}`));
    // The API lists 431 for "request line + headers"; accept nothing else.
    assertEnvelopeError(response, 431, 'headers_too_large');
  });

  test('headers just under --max-header-size are fine', async () => {
    const req = get('/healthz', `X-Pad: ${'p'.repeat(700)}\r\n`);
    assert.ok(req.length < 1024);
    const { response } = await rawRequest(srv.port, req);
    assert.equal(response.status, 200);
  });

  test('more than --max-headers headers get 431', async () => {
    let extra = '';
    for (let i = 0; i < 20; i++) extra += `X-H${i}: ${i}\r\n`;
    const { response } = await rawRequest(srv.port, get('/healthz', extra));
    assertEnvelopeError(response, 431, 'headers_too_large');
  });

  test('--max-headers headers are fine', async () => {
    let extra = '';
    for (let i = 0; i < 14; i++) extra += `X-H${i}: ${i}\r\n`; // + Host = 15 < 16
    const { response } = await rawRequest(srv.port, get('/healthz', extra));
    assert.equal(response.status, 200);
  });
});

describe('malformed requests get 400 and the connection is closed', () => {
  const cases = {
    'garbage request line': 'GARBAGE\r\n\r\n',
    'request line without a version': 'GET /healthz\r\n\r\n',
    'bad protocol name': 'GET /healthz FTP/1.1\r\nHost: x\r\n\r\n',
    'header line without a colon': 'GET /healthz HTTP/1.1\r\nHost x\r\n\r\n',
    'non-numeric Content-Length': 'POST /gateway/send_to_all HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
    'conflicting Content-Length headers':
      'POST /gateway/send_to_all HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
    'binary junk': Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a]),
  };
  // Each case on a server of its own, so one crash cannot hide the other cases.
  for (const [name, req] of Object.entries(cases)) {
    test(name, async (t) => {
      const own = await startServer();
      t.after(() => own.stop());
      const { response, closed } = await rawRequest(own.port, req, { waitClose: true });
      assert.equal(response.status, 400, `status for ${name}`);
      assert.equal(closed, true, 'connection closed after the 400');
      const after = await rawRequest(own.port, get('/healthz'));
      assert.equal(after.response.status, 200, 'the server still answers');
    });
  }

});

describe('strict header syntax (RFC 9112): lenient forms get 400 and close', () => {
  // http-parser 2.9 accepts these; a proxy in front of chatd may read them
  // differently (request smuggling), so chatd refuses them. Each request is
  // followed by a pipelined GET that must not be answered: the bytes after a
  // refused head are never taken for a request.
  const CL = 'POST /gateway/get_all_client_id_count HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + SECRET + '\r\n';
  const cases = {
    'space before the colon (Content-Length : 2)': CL + 'Content-Length : 2\r\n\r\n{}',
    'tab before the colon': CL + 'Content-Length\t: 2\r\n\r\n{}',
    'space before the colon in any header': get('/healthz', 'X-Thing : 1\r\n'),
    'a first header line starting with whitespace': 'GET /healthz HTTP/1.1\r\n Host: x\r\n\r\n',
    'obs-fold in Content-Length': CL + 'Content-Length: 2\r\n 0\r\n\r\n{}',
    'obs-fold in any header (space)': get('/healthz', 'X-Long: part one\r\n part two\r\n'),
    'obs-fold in any header (tab)': get('/healthz', 'X-Long: part one\r\n\tpart two\r\n'),
    'obs-fold with an empty continuation': get('/healthz', 'X-Long: a\r\n \r\n'),
    'obs-fold after bare LF line ends': 'GET /healthz HTTP/1.1\nHost: x\nX-Long: a\n b\n\n',
    'duplicate Content-Length (same value)': CL + 'Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}',
    'duplicate Content-Length (other case)': CL + 'Content-Length: 2\r\ncontent-length: 2\r\n\r\n{}',
    'Content-Length list (2, 2)': CL + 'Content-Length: 2, 2\r\n\r\n{}',
    'Content-Length and a folded duplicate': CL + 'Content-Length: 2\r\nContent-Length : 7\r\n\r\n{}',
  };
  let own;
  test('start a server for these cases', async (t) => {
    own = await startServer({ options: { 'api-secret': SECRET } });
  });
  after(() => own?.stop());
  for (const [name, req] of Object.entries(cases)) {
    test(name, async () => {
      const { responses, closed } = await rawRequest(own.port, req + get('/healthz'), { waitClose: true });
      assertEnvelopeError(responses[0], 400, 'bad_request');
      assert.equal(closed, true, 'connection closed after the 400');
    });
  }

  test('a fold split across reads is still refused', async () => {
    const c = await RawConn.connect(own.port);
    try {
      await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n');
      await sleep(50);
      await c.write(' ');
      await sleep(50);
      await c.write('b\r\n\r\n');
      const r = await c.readResponse();
      assertEnvelopeError(r, 400, 'bad_request');
      assert.equal(await c.waitClosed(1500), true);
    } finally {
      c.destroy();
    }
  });

  test('legal forms still pass: OWS around the value, a value split across reads', async () => {
    const r1 = await rawRequest(own.port, CL + 'Content-Length:\t 2 \r\nX-Empty:\r\n\r\n{}');
    assert.equal(r1.response.status, 200, r1.response.body.toString());
    const c = await RawConn.connect(own.port);
    try {
      await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Two-Words: one ');
      await sleep(50);
      await c.write('two\r\nX-Other: three');
      await sleep(50);
      await c.write('\r');
      await sleep(50);
      await c.write('\n\r\n');
      const r2 = await c.readResponse();
      assert.equal(r2.status, 200);
    } finally {
      c.destroy();
    }
    const after = await rawRequest(own.port, get('/healthz'));
    assert.equal(after.response.status, 200, 'the server still answers');
  });
});

describe('pipelining under a small --max-outbuf (4 KiB)', () => {
  // Answers count against --max-outbuf: over it, chatd stops parsing until
  // the client has read. A client that reads gets every answer, in order.
  let small;
  test('start a server with --max-outbuf 4096', async () => {
    small = await startServer({ options: { 'max-outbuf': 4096 } });
  });
  after(() => small?.stop());

  test('300 pipelined requests in one write are all answered, in order', async () => {
    const files = ['a.txt', 'b.txt', 'c.txt', 'no-such-file.txt'];
    const paths = Array.from({ length: 300 }, (_, i) => files[i % files.length]);
    const c = await RawConn.connect(small.port);
    try {
      await c.write(paths.map((p) => get('/' + p)).join(''));
      for (const [i, p] of paths.entries()) {
        const r = await c.readResponse();
        if (p in WEB_FIXTURES) {
          assert.equal(r.status, 200, `response ${i}`);
          assert.equal(r.body.toString(), WEB_FIXTURES[p], `response ${i} is ${p}`);
        } else {
          assert.equal(r.status, 404, `response ${i}`);
        }
      }
      assert.equal(c.ended, false, 'still open');
    } finally {
      c.destroy();
    }
  });

  test('a 300 KB file is sent whole, between pipelined answers, on a 4 KiB --max-outbuf', async () => {
    const c = await RawConn.connect(small.port);
    try {
      await c.write(get('/a.txt') + get('/big.bin') + get('/big.bin') + get('/b.txt') + get('/healthz'));
      const r1 = await c.readResponse();
      assert.equal(r1.body.toString(), WEB_FIXTURES['a.txt']);
      for (let i = 0; i < 2; i++) {
        const big = await c.readResponse({ timeoutMs: 5000 });
        assert.equal(big.status, 200);
        assert.equal(Buffer.compare(big.body, WEB_FIXTURES['big.bin']), 0, 'big.bin intact');
      }
      const r4 = await c.readResponse();
      assert.equal(r4.body.toString(), WEB_FIXTURES['b.txt']);
      const r5 = await c.readResponse();
      assert.equal(r5.status, 200);
      assert.equal(json(r5).status, true);
    } finally {
      c.destroy();
    }
  });

  test('a slow reader of a large file is not closed while it reads (only one that reads nothing is)', async (t) => {
    // 15 MB read at ~3 MB/s takes ~5 s, far past --header-timeout (1 s)
    // and past what the kernel buffers hold: chatd keeps the connection as
    // long as the client takes bytes.
    const slow = await startServer({ options: { 'max-outbuf': 4096, 'header-timeout': 1 } });
    t.after(() => slow.stop());
    const size = 15 * 1024 * 1024; // static files are served up to 16 MB
    const content = Buffer.alloc(size, 0x61);
    content.write('start', 0);
    content.write('end', size - 3);
    await fsp.writeFile(path.join(slow.webRoot, 'huge.bin'), content);
    const c = await RawConn.connect(slow.port);
    try {
      const RATE = 3 * 1024 * 1024; // bytes per second
      c.socket.on('data', (d) => {
        c.socket.pause();
        setTimeout(() => c.socket.resume(), (d.length / RATE) * 1000);
      });
      const t0 = Date.now();
      await c.write(get('/huge.bin') + get('/a.txt'));
      const r = await c.readResponse({ timeoutMs: 20000 });
      const took = Date.now() - t0;
      assert.equal(r.status, 200);
      assert.equal(r.body.length, size, 'the whole file');
      assert.equal(Buffer.compare(r.body, content), 0, 'intact');
      const r2 = await c.readResponse();
      assert.equal(r2.body.toString(), WEB_FIXTURES['a.txt'], 'the pipelined request after it');
      assert.ok(took > 2000, `the download took ${took} ms: longer than --header-timeout`);
    } finally {
      c.destroy();
    }
  });

  test('a reader that pauses and resumes gets the rest of its answers', async () => {
    const c = await RawConn.connect(small.port);
    try {
      c.socket.pause(); // read nothing for a while: chatd must hold, not drop
      await c.write(Array.from({ length: 2000 }, () => get('/healthz')).join(''));
      await sleep(300);
      c.socket.resume();
      for (let i = 0; i < 2000; i++) {
        const r = await c.readResponse({ timeoutMs: 5000 });
        assert.equal(r.status, 200, `response ${i}`);
      }
    } finally {
      c.destroy();
    }
  });
});

describe('timeouts', () => {
  // Four connections started 250 ms apart: a timer that fires early for some
  // phase of the second is caught every time, not by luck.
  test('headers not complete within --header-timeout (1 s): 408 and close, not before 1 s', async () => {
    const results = await staggered(4, 250, async () => {
      const t0 = Date.now(); // before connect: the measured time is never shorter than the server's
      const c = await RawConn.connect(srv.port);
      try {
        await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
        const r = await c.readResponse({ timeoutMs: 3500 });
        const dt = Date.now() - t0;
        return { status: r.status, dt, closed: await c.waitClosed(1000) };
      } finally {
        c.destroy();
      }
    });
    for (const r of results) {
      assert.equal(r.status, 408);
      assert.equal(r.closed, true, 'closed after the 408');
    }
    const dts = results.map((r) => r.dt);
    assert.ok(dts.every((dt) => dt >= 950), `408 sent only after the 1 s allowed; sent after ${dts.join(', ')} ms`);
    assert.ok(dts.every((dt) => dt <= 2800), `408 sent within 2.8 s; sent after ${dts.join(', ')} ms`);
  });

  test('headers trickled slowly still time out (the limit is for the whole head)', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      const t0 = Date.now();
      await c.write('GET /healthz HTTP/1.1\r\n');
      let i = 0;
      while (!c.ended && c.buf.length === 0 && Date.now() - t0 < 4000) {
        await c.write(`X-${i++}: y\r\n`);
        await sleep(150);
      }
      const dt = Date.now() - t0;
      assert.ok(dt < 3000, `connection answered/closed after ${dt} ms (header-timeout 1 s)`);
      const r = await c.readResponse({ timeoutMs: 1000 });
      assert.equal(r.status, 408);
    } finally {
      c.destroy();
    }
  });

  test('a connection that sends nothing is closed', async () => {
    const c = await RawConn.connect(srv.port);
    try {
      assert.equal(await c.waitClosed(4000), true, 'silent connection closed within header/keep-alive timeout');
    } finally {
      c.destroy();
    }
  });

  test('an idle keep-alive connection is closed after --keepalive-timeout (2 s), not before', async () => {
    const dts = await staggered(4, 250, async () => {
      const c = await RawConn.connect(srv.port);
      try {
        const t0 = Date.now(); // before the request: never later than the server's idle start
        await c.write(get('/healthz'));
        const r = await c.readResponse();
        assert.equal(r.status, 200);
        assert.equal(await c.waitClosed(4500), true, 'closed within keepalive-timeout + slack');
        return Date.now() - t0;
      } finally {
        c.destroy();
      }
    });
    assert.ok(dts.every((dt) => dt >= 1950), `closed only after 2 s idle; closed after ${dts.join(', ')} ms`);
    assert.ok(dts.every((dt) => dt <= 4000), `closed within 4 s; closed after ${dts.join(', ')} ms`);
  });
});

describe('methods', () => {
  test('GET on a gateway method is 405', async () => {
    const { response } = await rawRequest(srv.port, get('/gateway/send_to_all', `Authorization: Bearer ${SECRET}\r\n`));
    assertEnvelopeError(response, 405, 'method_not_allowed');
  });

  test('unknown path is 404', async () => {
    const { response } = await rawRequest(srv.port, get('/definitely/not/here'));
    assert.equal(response.status, 404);
  });
});

describe('CORS', () => {
  const withOrigin = (path, origin) => get(path, `Origin: ${origin}\r\n`);

  test('an allowed Origin gets Access-Control-Allow-Origin and Vary: Origin', async () => {
    for (const origin of ['http://good.example', 'http://also.example']) {
      const { response } = await rawRequest(cors.port, withOrigin('/healthz', origin));
      assert.equal(response.status, 200);
      assert.equal(response.headers['access-control-allow-origin'], origin);
      assert.match(response.headers.vary || '', /\bOrigin\b/i);
    }
  });

  test('an API call from an allowed Origin carries the CORS header', async () => {
    const { response } = await rawRequest(cors.port, post('/gateway/get_all_client_id_count', '{}', 'Origin: http://good.example\r\n'));
    assert.equal(response.status, 200);
    assert.equal(response.headers['access-control-allow-origin'], 'http://good.example');
  });

  test('an Origin not in the list gets no CORS header', async () => {
    for (const origin of ['http://evil.example', 'http://good.example.evil.example', 'http://good.exampl', 'null']) {
      const { response } = await rawRequest(cors.port, withOrigin('/healthz', origin));
      assert.equal(response.headers['access-control-allow-origin'], undefined, `no ACAO for ${origin}`);
    }
    const { response } = await rawRequest(cors.port, get('/healthz'));
    assert.equal(response.headers['access-control-allow-origin'], undefined, 'no ACAO without Origin');
  });

  test('preflight OPTIONS from an allowed origin gets 204 with methods and headers', async () => {
    const req =
      `OPTIONS /gateway/send_to_uid HTTP/1.1\r\nHost: x\r\nOrigin: http://good.example\r\n` +
      `Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type, token\r\n\r\n`;
    const { response } = await rawRequest(cors.port, req);
    assert.equal(response.status, 204);
    assert.equal(response.headers['access-control-allow-origin'], 'http://good.example');
    const methods = (response.headers['access-control-allow-methods'] || '').toUpperCase().split(/\s*,\s*/);
    assert.ok(methods.includes('POST'), `Allow-Methods includes POST: ${methods}`);
    assert.ok(methods.includes('GET'), `Allow-Methods includes GET: ${methods}`);
    const hdrs = (response.headers['access-control-allow-headers'] || '').toLowerCase().split(/\s*,\s*/);
    for (const h of ['authorization', 'content-type', 'token']) assert.ok(hdrs.includes(h), `Allow-Headers includes ${h}: ${hdrs}`);
  });

  test('preflight from a disallowed origin gets no Access-Control-Allow-Origin', async () => {
    const req =
      `OPTIONS /gateway/send_to_uid HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n` +
      `Access-Control-Request-Method: POST\r\n\r\n`;
    const { response } = await rawRequest(cors.port, req);
    assert.equal(response.headers['access-control-allow-origin'], undefined);
    assert.notEqual(response.status, 200);
  });

  test('"*" allows any origin (echoed back)', async () => {
    const { response } = await rawRequest(corsAny.port, withOrigin('/healthz', 'http://anything.example'));
    assert.equal(response.status, 200);
    assert.equal(response.headers['access-control-allow-origin'], 'http://anything.example');
  });

  test('without --cors-origins no CORS header is sent', async () => {
    const { response } = await rawRequest(srv.port, withOrigin('/healthz', 'http://good.example'));
    assert.equal(response.status, 200);
    assert.equal(response.headers['access-control-allow-origin'], undefined);
  });
});

// Last, as it may take the shared server down.
test('after all the bad input (and a malformed request now), the server still answers and the WebSocket bystander still works', async () => {
  const bad = await rawRequest(srv.port, 'GET /healthz HTTP/1.1\r\nHost x\r\n\r\n', { waitClose: true });
  assert.equal(bad.response.status, 400);
  assert.equal(bad.closed, true);
  const { response } = await rawRequest(srv.port, get('/healthz'));
  assert.equal(response.status, 200);
  assert.equal(bystander.closeInfo, null, 'bystander not closed');
  await bystander.pingPong();
  bystander.sendJson({ type: 'ping' });
  assert.deepEqual(await bystander.nextJson(), { type: 'pong' });
});
