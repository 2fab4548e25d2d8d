import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkBoot2, crc32Mpeg2, sealBoot2 } from '../boot2.mjs';
import { parseElf } from '../elf.mjs';
import { checkUf2, elfToUf2, parseUf2 } from '../uf2.mjs';
import { buildElf } from './synth.mjs';

const UF2_CLI = fileURLToPath(new URL('../uf2.mjs', import.meta.url));

/** Two PT_LOAD segments: 300 bytes from 0x10000000 (boot2 page + 44 bytes of the next page) and
 *  0x30 bytes at the unaligned 0x10000410 (a partial page). */
function synthElf() {
  const a = new Uint8Array(300).map((_, i) => (i * 7 + 1) & 0xff);
  sealBoot2(a.subarray(0, 256));
  const b = new Uint8Array(0x30).map((_, i) => 0xa0 + i);
  return buildElf([
    { paddr: 0x10000000, data: a },
    { paddr: 0x10000410, data: b },
  ], { _SEGGER_RTT: 0x20000100 });
}

const word = (uf2, block, k) => new DataView(uf2.buffer, uf2.byteOffset).getUint32(512 * block + 4 * k, true);
const setWord = (uf2, block, k, v) => new DataView(uf2.buffer, uf2.byteOffset).setUint32(512 * block + 4 * k, v >>> 0, true);

test('ELF reader: segments by physical address and .symtab', () => {
  const elf = parseElf(synthElf());
  assert.deepEqual(elf.segments.map((s) => [s.paddr, s.data.length]), [[0x10000000, 300], [0x10000410, 0x30]]);
  assert.equal(elf.symbol('_SEGGER_RTT').value, 0x20000100);
  assert.equal(elf.symbol('nope'), undefined);
});

test('CRC-32/MPEG-2 check value and boot2 seal', () => {
  assert.equal(crc32Mpeg2(Buffer.from('123456789')), 0x0376e6e7);
  const area = sealBoot2(new Uint8Array(256).fill(0x5a));
  assert.equal(checkBoot2(area).ok, true);
  area[17] ^= 1;
  assert.equal(checkBoot2(area).ok, false);
  assert.equal(checkBoot2(new Uint8Array(256).fill(0xff)).ok, false); // erased flash
});

test('UF2 writer: blocks, pages, padding, family', () => {
  const elf = synthElf();
  const uf2 = elfToUf2(elf);
  assert.equal(uf2.length, 3 * 512);
  const blocks = parseUf2(uf2);
  assert.deepEqual(blocks.map((b) => b.addr), [0x10000000, 0x10000100, 0x10000400]);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual([0, 1, 2, 4, 5, 6, 7].map((k) => word(uf2, i, k)), [0x0a324655, 0x9e5d5157, 0x2000, 256, i, 3, 0xe48bff56]);
    assert.equal(new DataView(uf2.buffer).getUint32(512 * i + 508, true), 0x0ab16f30);
    assert.ok(uf2.subarray(512 * i + 32 + 256, 512 * i + 508).every((b) => b === 0), 'data area after the payload is 0');
  }
  const seg = parseElf(elf).segments;
  assert.deepEqual(blocks[0].data, seg[0].data.subarray(0, 256));
  assert.deepEqual(blocks[1].data.subarray(0, 44), seg[0].data.subarray(256));
  assert.ok(blocks[1].data.subarray(44).every((b) => b === 0), 'partial page padded with 0');
  assert.ok(blocks[2].data.subarray(0, 0x10).every((b) => b === 0));
  assert.deepEqual(blocks[2].data.subarray(0x10, 0x40), seg[1].data);
  assert.match(checkUf2(uf2, elf), /^uf2: 3 blocks, flash 0x10000000\.\.0x10000500, family RP2040, matches the ELF, boot2 CRC ok, ok$/);
});

test('UF2 checker rejects corruptions', () => {
  const elf = synthElf();
  const good = elfToUf2(elf);
  const cases = [
    ['first start magic', (u) => setWord(u, 1, 0, 0x0a324654), /block 1: first start magic/],
    ['second start magic', (u) => setWord(u, 2, 1, 0), /block 2: second start magic/],
    ['end magic', (u) => setWord(u, 0, 127, 0x0ab16f31), /block 0: end magic/],
    ['flags', (u) => setWord(u, 0, 2, 0), /block 0: flags/],
    ['family id', (u) => setWord(u, 1, 7, 0x68ed2b88), /block 1: family ID 0x68ed2b88 != 0xe48bff56/],
    ['payload size', (u) => setWord(u, 2, 4, 476), /block 2: payload size 476 != 256/],
    ['block number', (u) => setWord(u, 1, 5, 2), /block 1: block number 2/],
    ['number of blocks', (u) => [0, 1, 2].forEach((b) => setWord(u, b, 6, 4)), /number of blocks 4 != 3/],
    ['overlap', (u) => setWord(u, 2, 3, 0x10000100), /block 2: address 0x10000100 overlaps block 1/],
    ['unaligned address', (u) => setWord(u, 2, 3, 0x10000480), /not 256-byte aligned/],
    ['address outside flash', (u) => setWord(u, 2, 3, 0x20000000), /outside flash/],
    ['content', (u) => (u[512 * 2 + 32 + 0x20] ^= 0xff), /byte at 0x10000420 differs from the ELF/],
  ];
  for (const [name, corrupt, message] of cases) {
    const u = good.slice();
    corrupt(u);
    assert.throws(() => checkUf2(u, elf), message, name);
  }
  // a missing block (file renumbered so that it is valid on its own): the ELF check notices
  const missing = new Uint8Array(1024);
  missing.set(good.subarray(0, 512), 0);
  missing.set(good.subarray(1024, 1536), 512);
  [0, 1].forEach((b) => {
    setWord(missing, b, 5, b);
    setWord(missing, b, 6, 2);
  });
  assert.match(checkUf2(missing), /^uf2: 2 blocks/);
  assert.throws(() => checkUf2(missing, elf), /no block holds the ELF's flash bytes at 0x10000100/);
  // a missing block without renumbering: the block count says so
  assert.throws(() => checkUf2(Uint8Array.from([...good.subarray(0, 512), ...good.subarray(1024)])), /block 0: number of blocks 3 != 2 blocks in the file/);
  // an extra block the ELF does not have; a truncated file
  const extra = Uint8Array.from([...good, ...good.subarray(0, 512)]);
  [0, 1, 2, 3].forEach((b) => setWord(extra, b, 6, 4));
  setWord(extra, 3, 5, 3);
  setWord(extra, 3, 3, 0x10001000);
  assert.throws(() => checkUf2(extra, elf), /block at 0x10001000 holds no byte/);
  assert.throws(() => checkUf2(good.subarray(0, 700)), /not a positive multiple of 512/);
  // no boot2 first; a bad boot2 CRC
  const noBoot2 = buildElf([{ paddr: 0x10000100, data: new Uint8Array(8) }]);
  assert.throws(() => checkUf2(elfToUf2(noBoot2), noBoot2), /first block is at 0x10000100, not 0x10000000/);
  const badCrc = good.slice();
  badCrc[32 + 3] ^= 1;
  const badElf = buildElf([{ paddr: 0x10000000, data: badCrc.subarray(32, 32 + 256) }, ...parseElf(elf).segments.slice(1)]);
  assert.throws(() => checkUf2(elfToUf2(badElf), badElf), /boot2 CRC/);
  // segments outside flash cannot go into a flash UF2
  assert.throws(() => elfToUf2(buildElf([{ paddr: 0x20000000, data: new Uint8Array(4) }])), /outside flash/);
});

test('uf2.mjs CLI: write, check, exit codes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uf2-test-'));
  const elfPath = join(dir, 'fw.elf');
  const uf2Path = join(dir, 'fw.uf2');
  writeFileSync(elfPath, synthElf());
  const w = execFileSync('node', [UF2_CLI, 'write', elfPath, uf2Path], { encoding: 'utf8' });
  assert.match(w, /^uf2: wrote .*fw\.uf2: 3 blocks, flash 0x10000000\.\.0x10000500, family RP2040, ok\n$/);
  const c = execFileSync('node', [UF2_CLI, 'check', uf2Path, elfPath], { encoding: 'utf8' });
  assert.match(c, /^uf2: 3 blocks, .* ok\n$/);
  const u = readFileSync(uf2Path);
  u.writeUInt32LE(0x12345678, 28); // family ID of block 0
  writeFileSync(uf2Path, u);
  const bad = spawnSync('node', [UF2_CLI, 'check', uf2Path], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^error: block 0: family ID 0x12345678 != 0xe48bff56 \(RP2040\)\n$/);
  assert.equal(spawnSync('node', [UF2_CLI, 'frobnicate'], { encoding: 'utf8' }).status, 2);
});
