// UTF-8 fail-fast: the bytes of a text message are validated as they arrive,
// inside a frame that is still incomplete and across fragments, so invalid
// text is closed with 1007 before the rest of the frame is sent (the
// situation of Autobahn cases 6.4.3 and 6.4.4), and valid text cut at any
// byte still comes back whole.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { RawWs, OP, buildFrame } from './lib/ws.mjs';

const srv = await startServer({ options: { 'max-message': 65536, 'echo-path': '/echo' } });
after(() => srv.stop());

const echo = () => RawWs.connect(srv.port, { path: '/echo' });

// κόσμε then U+10FFFF+1 (F4 90 80 80: above the Unicode range) then more text
const GOOD = Buffer.from('κόσμε', 'utf8');
const BAD = Buffer.from([0xf4, 0x90, 0x80, 0x80]);

/** The wire bytes of a frame cut after the header and `keep` payload bytes. */
function frameHead(opts, keep) {
  const full = buildFrame(opts);
  const hdr = full.length - opts.payload.length;
  return { head: full.subarray(0, hdr + keep), rest: full.subarray(hdr + keep) };
}

/** Expects a close with `code` within timeoutMs; returns the close. */
async function expectCloseSoon(c, code, timeoutMs = 1000) {
  const r = await c.readClose(timeoutMs);
  assert.equal(r.code, code, `close code (reason ${JSON.stringify(r.reason)})`);
  return r;
}

/** Asserts nothing arrives for ms (the server is still waiting for bytes). */
async function expectSilence(c, ms = 150) {
  await assert.rejects(c.readFrame(ms), /timed out|timeout/i, 'the server must not answer yet');
}

describe('invalid UTF-8 inside a frame that is still arriving', () => {
  test('a 1000-byte text frame: close 1007 after its first bad bytes, before the rest is sent', async () => {
    const payload = Buffer.alloc(1000, 0x61);
    GOOD.copy(payload, 0);
    BAD.copy(payload, GOOD.length);
    const { head } = frameHead({ opcode: OP.TEXT, payload }, GOOD.length + BAD.length);
    const c = await echo();
    try {
      await c.sendRaw(head); // 14 of 1000 bytes; the other 986 are never sent
      await expectCloseSoon(c, 1007);
    } finally {
      c.destroy();
    }
  });

  test('bytes arriving in pieces: valid pieces get no answer, the first invalid byte gets 1007', async () => {
    const payload = Buffer.alloc(1000, 0x62);
    GOOD.copy(payload, 0);
    GOOD.copy(payload, 20);
    payload[40] = 0xc0; // never valid (overlong lead)
    const full = buildFrame({ opcode: OP.TEXT, payload });
    const hdr = full.length - payload.length;
    const c = await echo();
    try {
      await c.sendRaw(full.subarray(0, hdr)); // header only
      await sleep(30);
      await c.sendRaw(full.subarray(hdr, hdr + 11)); // cut inside a 2-byte character
      await sleep(30);
      await c.sendRaw(full.subarray(hdr + 11, hdr + 40)); // still valid
      await expectSilence(c);
      await c.sendRaw(full.subarray(hdr + 40, hdr + 41)); // the bad byte alone
      await expectCloseSoon(c, 1007);
    } finally {
      c.destroy();
    }
  });

  test('a truncated character cut by a bad byte in the next read (6.4.4: F4 then 90)', async () => {
    const payload = Buffer.alloc(200, 0x63);
    GOOD.copy(payload, 0);
    BAD.copy(payload, GOOD.length);
    const full = buildFrame({ opcode: OP.TEXT, payload });
    const hdr = full.length - payload.length;
    const c = await echo();
    try {
      await c.sendRaw(full.subarray(0, hdr + GOOD.length + 1)); // ends with F4: valid so far
      await expectSilence(c);
      await c.sendRaw(full.subarray(hdr + GOOD.length + 1, hdr + GOOD.length + 2)); // 90: invalid after F4
      await expectCloseSoon(c, 1007);
    } finally {
      c.destroy();
    }
  });

  test('a fragmented message whose second fragment turns invalid mid-frame', async () => {
    const c = await echo();
    try {
      // first fragment complete, ending inside a 3-byte character (E2 82 of €)
      const euro = Buffer.from('€', 'utf8');
      const first = Buffer.concat([Buffer.from('hello '), euro.subarray(0, 2)]);
      await c.send({ fin: false, opcode: OP.TEXT, payload: first });
      await expectSilence(c, 80);
      // second fragment announces 500 bytes: it finishes the character, then goes bad
      const payload = Buffer.alloc(500, 0x64);
      payload[0] = euro[2];
      payload[10] = 0xff;
      const { head } = frameHead({ fin: true, opcode: OP.CONT, payload }, 11);
      await c.sendRaw(head.subarray(0, head.length - 1)); // everything before 0xFF: valid
      await expectSilence(c);
      await c.sendRaw(head.subarray(head.length - 1));
      await expectCloseSoon(c, 1007);
    } finally {
      c.destroy();
    }
  });

  test('a continuation that breaks the character the previous fragment left open', async () => {
    const c = await echo();
    try {
      await c.send({ fin: false, opcode: OP.TEXT, payload: Buffer.from([0x41, 0xe2, 0x82]) });
      const payload = Buffer.alloc(300, 0x41); // 'A' where a continuation byte must come
      const { head } = frameHead({ fin: true, opcode: OP.CONT, payload }, 1);
      await c.sendRaw(head);
      await expectCloseSoon(c, 1007);
    } finally {
      c.destroy();
    }
  });
});

describe('valid text cut anywhere', () => {
  test('a 3000-byte multi-byte text in 7-byte pieces comes back whole', async () => {
    const text = 'aé€😀'.repeat(300); // 1+2+3+4 bytes: every cut lands in a different place
    const payload = Buffer.from(text, 'utf8');
    const full = buildFrame({ opcode: OP.TEXT, payload });
    const c = await echo();
    try {
      for (let i = 0; i < full.length; i += 7) {
        await c.sendRaw(full.subarray(i, i + 7));
        if (i % 700 === 0) await sleep(5); // let some pieces arrive as separate reads
      }
      const m = await c.readMessage();
      assert.equal(m.opcode, OP.TEXT);
      assert.equal(m.text, text);
    } finally {
      c.destroy();
    }
  });

  test('fragments cut inside characters, each frame sent in pieces, with a ping between', async () => {
    const text = '😀€é'.repeat(100);
    const bytes = Buffer.from(text, 'utf8');
    const cuts = [0, 5, 333, 334, 700, bytes.length];
    const c = await echo();
    try {
      for (let k = 0; k + 1 < cuts.length; k++) {
        const payload = bytes.subarray(cuts[k], cuts[k + 1]);
        const f = buildFrame({ fin: k + 2 === cuts.length, opcode: k === 0 ? OP.TEXT : OP.CONT, payload });
        const mid = Math.floor(f.length / 2);
        await c.sendRaw(f.subarray(0, mid));
        await sleep(10);
        await c.sendRaw(f.subarray(mid));
        if (k === 1) await c.ping('between');
      }
      let m;
      do m = await c.readFrame();
      while (m.opcode === OP.PONG);
      assert.equal(m.opcode, OP.TEXT);
      assert.equal(m.payload.toString('utf8'), text);
    } finally {
      c.destroy();
    }
  });

  test('binary frames in pieces are not validated', async () => {
    const payload = Buffer.alloc(600, 0xff);
    const full = buildFrame({ opcode: OP.BINARY, payload });
    const c = await echo();
    try {
      await c.sendRaw(full.subarray(0, 100));
      await sleep(30);
      await c.sendRaw(full.subarray(100));
      const m = await c.readMessage();
      assert.equal(m.opcode, OP.BINARY);
      assert.ok(m.data.equals(payload));
    } finally {
      c.destroy();
    }
  });
});
