import { sealBoot2 } from '../boot2.mjs';
import { PT_LOAD } from '../elf.mjs';

const SHT_SYMTAB = 2;

/** Builds a minimal ELF32 (ARM, executable) with one PT_LOAD per { paddr, data } and,
 *  optionally, a .symtab with { name: value } symbols. For tests and synthetic images. */
export function buildElf(segs, syms = {}) {
  const names = Object.keys(syms);
  const strtab = [0];
  const nameOffsets = names.map((n) => {
    const off = strtab.length;
    strtab.push(...Buffer.from(n, 'latin1'), 0);
    return off;
  });
  const shstr = Buffer.from('\0.symtab\0.strtab\0.shstrtab\0', 'latin1');
  const phoff = 52;
  let pos = phoff + 32 * segs.length;
  const dataOffsets = segs.map((s) => {
    const off = pos;
    pos += s.data.length;
    return off;
  });
  const symOff = (pos = (pos + 3) & ~3);
  const symSize = 16 * (names.length + 1);
  const strOff = symOff + symSize;
  const shstrOff = strOff + strtab.length;
  const shoff = (shstrOff + shstr.length + 3) & ~3;
  const out = Buffer.alloc(shoff + 40 * 4);
  out.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0);
  out.writeUInt16LE(2, 16); // ET_EXEC
  out.writeUInt16LE(40, 18); // EM_ARM
  out.writeUInt32LE(1, 20);
  out.writeUInt32LE(segs.length ? segs[0].paddr | 1 : 0, 24);
  out.writeUInt32LE(phoff, 28);
  out.writeUInt32LE(shoff, 32);
  out.writeUInt32LE(0x05000200, 36);
  out.writeUInt16LE(52, 40);
  out.writeUInt16LE(32, 42);
  out.writeUInt16LE(segs.length, 44);
  out.writeUInt16LE(40, 46);
  out.writeUInt16LE(4, 48);
  out.writeUInt16LE(3, 50);
  segs.forEach((s, i) => {
    const ph = phoff + 32 * i;
    [PT_LOAD, dataOffsets[i], s.vaddr ?? s.paddr, s.paddr, s.data.length, s.data.length, 7, 4].forEach((v, k) =>
      out.writeUInt32LE(v >>> 0, ph + 4 * k),
    );
    out.set(s.data, dataOffsets[i]);
  });
  names.forEach((n, i) => {
    const e = symOff + 16 * (i + 1);
    out.writeUInt32LE(nameOffsets[i], e);
    out.writeUInt32LE(syms[n] >>> 0, e + 4);
    out[e + 12] = 0x11; // STB_GLOBAL, STT_OBJECT
    out.writeUInt16LE(0xfff1, e + 14); // SHN_ABS
  });
  out.set(strtab, strOff);
  out.set(shstr, shstrOff);
  const section = (i, name, type, offset, size, link, entsize) =>
    [name, type, 0, 0, offset, size, link, 0, 4, entsize].forEach((v, k) => out.writeUInt32LE(v, shoff + 40 * i + 4 * k));
  section(1, 1, SHT_SYMTAB, symOff, symSize, 2, 16);
  section(2, 9, 3, strOff, strtab.length, 0, 0);
  section(3, 17, 3, shstrOff, shstr.length, 0, 0);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** A tiny hand-encoder for the Thumb-1 instructions the tests need (two passes over labels). */
export class Thumb {
  constructor(base) {
    this.base = base;
    this.h = []; // halfwords
    this.labels = {};
    this.fixups = [];
  }
  get pc() {
    return this.base + 2 * this.h.length;
  }
  label(name) {
    this.labels[name] = this.pc;
    return this;
  }
  op(...halfwords) {
    this.h.push(...halfwords);
    return this;
  }
  fix(kind, label, bits) {
    this.fixups.push({ at: this.h.length, kind, label, bits });
    return this.op(0);
  }
  movs(rd, imm8) { return this.op(0x2000 | (rd << 8) | imm8); }
  adds(rdn, imm8) { return this.op(0x3000 | (rdn << 8) | imm8); }
  subs(rdn, imm8) { return this.op(0x3800 | (rdn << 8) | imm8); }
  movReg(rd, rm) { return this.op(0x4600 | ((rd & 8) << 4) | (rm << 3) | (rd & 7)); }
  ldr(rt, rn, imm = 0) { return this.op(0x6800 | ((imm >> 2) << 6) | (rn << 3) | rt); }
  str(rt, rn, imm = 0) { return this.op(0x6000 | ((imm >> 2) << 6) | (rn << 3) | rt); }
  strb(rt, rn, imm = 0) { return this.op(0x7000 | (imm << 6) | (rn << 3) | rt); }
  ldrLit(rt, label) { return this.fix('lit', label, rt); }
  adr(rd, label) { return this.fix('adr', label, rd); }
  b(label) { return this.fix('b', label); }
  bne(label) { return this.fix('bcc', label, 0x1); }
  beq(label) { return this.fix('bcc', label, 0x0); }
  tst(rn, rm) { return this.op(0x4200 | (rm << 3) | rn); }
  bkpt(imm) { return this.op(0xbe00 | imm); }
  udf(imm) { return this.op(0xde00 | imm); }
  bxLr() { return this.op(0x4770); }
  bx(rm) { return this.op(0x4700 | (rm << 3)); }
  wfi() { return this.op(0xbf30); }
  cpsie() { return this.op(0xb662); }
  cpsid() { return this.op(0xb672); }
  ldmR0R0R1() { return this.op(0xc803); } // ldm r0, {r0, r1}
  msrMspR0() { return this.op(0xf380, 0x8808); }
  align4() {
    if (this.h.length % 2) this.op(0xbf00); // nop
    return this;
  }
  word(v) { return this.op(v & 0xffff, v >>> 16); }
  ascii(s) {
    const bytes = [...Buffer.from(s + '\0', 'latin1')];
    if (bytes.length % 2) bytes.push(0);
    for (let i = 0; i < bytes.length; i += 2) this.op(bytes[i] | (bytes[i + 1] << 8));
    return this;
  }
  /** Resolves the labels; returns the bytes. */
  bytes() {
    for (const { at, kind, label, bits } of this.fixups) {
      const target = this.labels[label];
      if (target === undefined) throw new Error(`undefined label ${label}`);
      const pc = this.base + 2 * at + 4;
      if (kind === 'lit' || kind === 'adr') {
        const off = target - (pc & ~3);
        if (off < 0 || off % 4 || off > 1020) throw new Error(`${label} out of reach`);
        this.h[at] = (kind === 'lit' ? 0x4800 : 0xa000) | (bits << 8) | (off >> 2);
      } else if (kind === 'b') {
        this.h[at] = 0xe000 | (((target - pc) >> 1) & 0x7ff);
      } else {
        this.h[at] = 0xd000 | (bits << 8) | (((target - pc) >> 1) & 0xff);
      }
    }
    const out = new Uint8Array(2 * this.h.length);
    this.h.forEach((v, i) => {
      out[2 * i] = v & 0xff;
      out[2 * i + 1] = v >> 8;
    });
    return out;
  }
}

export const FLASH = 0x10000000;
export const CODE = 0x10000200;
export const STACK_TOP = 0x20040000;

/** A minimal boot2 (run from SRAM 0x20041f00 by the ROM): VTOR = 0x10000100, MSP and PC from
 *  that table - what a real boot2 does after its XIP set-up. 256 bytes, CRC sealed. */
export function boot2() {
  const a = new Thumb(0x20041f00)
    .ldrLit(0, 'table')
    .ldrLit(1, 'vtor')
    .str(0, 1)
    .ldmR0R0R1()
    .msrMspR0()
    .bx(1)
    .align4()
    .label('table')
    .word(0x10000100)
    .label('vtor')
    .word(0xe000ed08);
  const area = new Uint8Array(256);
  area.set(a.bytes());
  return sealBoot2(area);
}

/** An ELF: boot2 at 0x10000000 (when given), vector table at 0x10000100, `code` (a Thumb built at
 *  CODE) after it; extra symbols optional. */
export function firmwareElf(code, { boot2Area, syms } = {}) {
  const vt = new Uint8Array(8);
  new DataView(vt.buffer).setUint32(0, STACK_TOP, true);
  new DataView(vt.buffer).setUint32(4, (CODE | 1) >>> 0, true);
  const segs = [];
  if (boot2Area) segs.push({ paddr: FLASH, data: boot2Area });
  segs.push({ paddr: 0x10000100, data: vt }, { paddr: CODE, data: code.bytes() });
  return buildElf(segs, syms);
}
