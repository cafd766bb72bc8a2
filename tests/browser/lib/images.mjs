// Pictures made in the tests: PNGs of any size, as chatd's /media accepts them
// (docs/MEDIA.md), and the steps that hand files to the page by picking,
// pasting and dropping.
import crypto from 'node:crypto';
import zlib from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/**
 * A w x h RGB PNG of one colour [r, g, b]; noise: random pixels (does not compress: a
 * large file for a small picture).
 */
export function png(w, h, [r, g, b] = [40, 120, 200], { noise = false } = {}) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = noise ? crypto.randomBytes(1 + 3 * w) : Buffer.alloc(1 + 3 * w);
    row[0] = 0;
    if (!noise) for (let x = 0; x < w; x++) row.set([r, g, b], 1 + 3 * x);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows), { level: noise ? 0 : 6 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A File in the page from bytes, by a JS handle (for DataTransfer). */
async function dataTransfer(page, { name, mimeType, buffer }) {
  return page.evaluateHandle(
    ({ name, mimeType, b64 }) => {
      const bin = atob(b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], name, { type: mimeType }));
      return dt;
    },
    { name, mimeType, b64: buffer.toString('base64') },
  );
}

/** Pastes a file into the element (a ClipboardEvent whose clipboardData holds it). */
export async function pasteFile(page, selector, file) {
  const dt = await dataTransfer(page, file);
  await page.locator(selector).evaluate((el, data) => {
    el.focus();
    el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  }, dt);
  await dt.dispose();
}

/** Drags a file over the element and drops it there. */
export async function dropFile(page, selector, file) {
  const dt = await dataTransfer(page, file);
  const loc = page.locator(selector);
  await loc.dispatchEvent('dragenter', { dataTransfer: dt });
  await loc.dispatchEvent('dragover', { dataTransfer: dt });
  await loc.dispatchEvent('drop', { dataTransfer: dt });
  await dt.dispose();
}
