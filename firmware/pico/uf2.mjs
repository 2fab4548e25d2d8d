#!/usr/bin/env node
// UF2 for the RP2040 (Microsoft UF2 format, https://github.com/microsoft/uf2), Node standard
// library only.
//
//   node uf2.mjs write FIRMWARE.elf OUT.uf2     UF2 from the ELF's PT_LOAD segments in flash
//   node uf2.mjs check FILE.uf2 [FIRMWARE.elf]  validate every block (and, given the ELF, that the
//                                               blocks hold exactly its flash bytes, boot2 first)
//
// Block (512 bytes, little-endian words): magic 0x0A324655, magic 0x9E5D5157, flags (0x2000 =
// family ID present), target address, payload size (256), block number, number of blocks, family
// ID (0xe48bff56 = RP2040), 476 data bytes (payload first, rest 0), end magic 0x0AB16F30.
// Exit status: 0 ok, 1 invalid (one line `error: ...` on stderr), 2 usage. `write` warns (exit 0)
// when the image would not boot (no boot2 at 0x10000000, or its CRC is wrong).

import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { checkBoot2 } from './boot2.mjs';
import { parseElf } from './elf.mjs';

export const UF2_MAGIC_START0 = 0x0a324655;
export const UF2_MAGIC_START1 = 0x9e5d5157;
export const UF2_MAGIC_END = 0x0ab16f30;
export const UF2_FLAG_FAMILY_ID_PRESENT = 0x2000;
export const RP2040_FAMILY_ID = 0xe48bff56;
export const FLASH_START = 0x10000000;
export const FLASH_END = 0x11000000; // XIP window (16 MiB); a Pico's flash is 2 MiB of it
export const BLOCK_SIZE = 512;
export const PAGE_SIZE = 256;

const hex = (v) => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

/** The ELF's flash bytes as 256-byte pages: Map(page address -> { data, mask }), mask marking
 *  the bytes that come from the ELF (the rest is padding, 0). Throws on segments outside flash. */
export function flashPages(elf) {
  const pages = new Map();
  for (const { paddr, data } of elf.segments) {
    const end = paddr + data.length;
    if (paddr < FLASH_START || end > FLASH_END) {
      throw new Error(`segment ${hex(paddr)}..${hex(end)} (${data.length} bytes) is outside flash ${hex(FLASH_START)}..${hex(FLASH_END)}`);
    }
    for (let a = paddr; a < end; ) {
      const page = a - (a % PAGE_SIZE);
      if (!pages.has(page)) pages.set(page, { data: new Uint8Array(PAGE_SIZE), mask: new Uint8Array(PAGE_SIZE) });
      const p = pages.get(page);
      const n = Math.min(end, page + PAGE_SIZE) - a;
      p.data.set(data.subarray(a - paddr, a - paddr + n), a - page);
      p.mask.fill(1, a - page, a - page + n);
      a += n;
    }
  }
  if (pages.size === 0) throw new Error('the ELF has no PT_LOAD segment with bytes in flash');
  return new Map([...pages].sort((x, y) => x[0] - y[0]));
}

/** UF2 bytes for `pages` (Map address -> 256 bytes, or { data }), in address order. */
export function writeUf2(pages) {
  const entries = [...pages].sort((x, y) => x[0] - y[0]);
  const out = new Uint8Array(entries.length * BLOCK_SIZE);
  const view = new DataView(out.buffer);
  entries.forEach(([addr, page], i) => {
    const data = page.data ?? page;
    const b = i * BLOCK_SIZE;
    const words = [UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_FLAG_FAMILY_ID_PRESENT, addr, PAGE_SIZE, i, entries.length, RP2040_FAMILY_ID];
    words.forEach((w, k) => view.setUint32(b + 4 * k, w >>> 0, true));
    out.set(data.subarray(0, PAGE_SIZE), b + 32);
    view.setUint32(b + BLOCK_SIZE - 4, UF2_MAGIC_END, true);
  });
  return out;
}

/** UF2 bytes for an ELF file's flash segments. */
export function elfToUf2(elfBytes) {
  return writeUf2(flashPages(parseElf(elfBytes)));
}

/** Validates every block of an RP2040 UF2; returns [{ addr, data }] in file order, or throws an
 *  Error whose message names the first problem. */
export function parseUf2(bytes) {
  if (bytes.length === 0 || bytes.length % BLOCK_SIZE !== 0) {
    throw new Error(`file size ${bytes.length} is not a positive multiple of ${BLOCK_SIZE}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length / BLOCK_SIZE;
  const blocks = [];
  const seen = new Map();
  for (let i = 0; i < n; i++) {
    const b = i * BLOCK_SIZE;
    const w = (k) => view.getUint32(b + 4 * k, true);
    const at = `block ${i}`;
    if (w(0) !== UF2_MAGIC_START0) throw new Error(`${at}: first start magic ${hex(w(0))} != ${hex(UF2_MAGIC_START0)}`);
    if (w(1) !== UF2_MAGIC_START1) throw new Error(`${at}: second start magic ${hex(w(1))} != ${hex(UF2_MAGIC_START1)}`);
    const end = view.getUint32(b + BLOCK_SIZE - 4, true);
    if (end !== UF2_MAGIC_END) throw new Error(`${at}: end magic ${hex(end)} != ${hex(UF2_MAGIC_END)}`);
    if (w(2) !== UF2_FLAG_FAMILY_ID_PRESENT) throw new Error(`${at}: flags ${hex(w(2))} != ${hex(UF2_FLAG_FAMILY_ID_PRESENT)} (family ID present)`);
    if (w(7) !== RP2040_FAMILY_ID) throw new Error(`${at}: family ID ${hex(w(7))} != ${hex(RP2040_FAMILY_ID)} (RP2040)`);
    if (w(4) !== PAGE_SIZE) throw new Error(`${at}: payload size ${w(4)} != ${PAGE_SIZE}`);
    if (w(5) !== i) throw new Error(`${at}: block number ${w(5)} (blocks must be numbered 0..${n - 1} in order)`);
    if (w(6) !== n) throw new Error(`${at}: number of blocks ${w(6)} != ${n} blocks in the file`);
    const addr = w(3);
    if (addr % PAGE_SIZE !== 0) throw new Error(`${at}: address ${hex(addr)} is not ${PAGE_SIZE}-byte aligned`);
    if (addr < FLASH_START || addr + PAGE_SIZE > FLASH_END) throw new Error(`${at}: address ${hex(addr)} is outside flash ${hex(FLASH_START)}..${hex(FLASH_END)}`);
    if (seen.has(addr)) throw new Error(`${at}: address ${hex(addr)} overlaps block ${seen.get(addr)}`);
    seen.set(addr, i);
    blocks.push({ addr, data: bytes.subarray(b + 32, b + 32 + PAGE_SIZE) });
  }
  return blocks;
}

/** Checks a UF2 (and, given ELF bytes, its contents against the ELF); returns the summary line
 *  or throws. */
export function checkUf2(uf2Bytes, elfBytes) {
  const blocks = parseUf2(uf2Bytes);
  const lo = Math.min(...blocks.map((b) => b.addr));
  const hi = Math.max(...blocks.map((b) => b.addr)) + PAGE_SIZE;
  let extra = '';
  if (elfBytes) {
    const pages = flashPages(parseElf(elfBytes));
    const byAddr = new Map(blocks.map((b) => [b.addr, b.data]));
    if (blocks[0].addr !== FLASH_START) {
      throw new Error(`first block is at ${hex(blocks[0].addr)}, not ${hex(FLASH_START)} (boot2): a Pico would not boot it`);
    }
    for (const [addr, { data, mask }] of pages) {
      const got = byAddr.get(addr);
      if (!got) throw new Error(`no block holds the ELF's flash bytes at ${hex(addr)}..${hex(addr + PAGE_SIZE)}`);
      for (let k = 0; k < PAGE_SIZE; k++) {
        if (mask[k] && got[k] !== data[k]) throw new Error(`byte at ${hex(addr + k)} differs from the ELF (${got[k]} != ${data[k]})`);
      }
    }
    for (const { addr } of blocks) {
      if (!pages.has(addr)) throw new Error(`block at ${hex(addr)} holds no byte of the ELF's flash segments`);
    }
    const boot2 = checkBoot2(byAddr.get(FLASH_START));
    if (!boot2.ok) throw new Error(`boot2 CRC-32/MPEG-2 ${hex(boot2.computed)} != stored ${hex(boot2.stored)}: the boot ROM would not run it`);
    extra = ', matches the ELF, boot2 CRC ok';
  }
  return `uf2: ${blocks.length} blocks, flash ${hex(lo)}..${hex(hi)}, family RP2040${extra}, ok`;
}

function main(argv) {
  const usage = 'usage: node uf2.mjs write FIRMWARE.elf OUT.uf2 | node uf2.mjs check FILE.uf2 [FIRMWARE.elf]';
  const [cmd, ...args] = argv;
  try {
    if (cmd === 'write' && args.length === 2) {
      const elf = readFileSync(args[0]);
      const uf2 = elfToUf2(elf);
      writeFileSync(args[1], uf2);
      console.log(checkUf2(uf2).replace(/^uf2:/, `uf2: wrote ${args[1]}:`));
      try {
        checkUf2(uf2, elf);
      } catch (e) {
        console.error(`warning: ${e.message}`);
      }
      return 0;
    }
    if (cmd === 'check' && (args.length === 1 || args.length === 2)) {
      console.log(checkUf2(readFileSync(args[0]), args[1] ? readFileSync(args[1]) : undefined));
      return 0;
    }
  } catch (e) {
    console.error(`error: ${e.message}`);
    return 1;
  }
  console.error(usage);
  return 2;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
