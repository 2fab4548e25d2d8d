// Minimal ELF32 little-endian reader (Node standard library only): the PT_LOAD segments with
// their physical (load) addresses, and symbol look-up in .symtab. Used by run.mjs and uf2.mjs.

export const PT_LOAD = 1;
const SHT_SYMTAB = 2;

/** True when `bytes` start with the ELF magic. */
export function isElf(bytes) {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

/**
 * Parses an ELF32 little-endian image. Throws an Error with a one-line message when the file is
 * not one. Returns { segments: [{ paddr, vaddr, memsz, data }], symbol(name) }, where `segments`
 * holds the PT_LOAD segments with file bytes (filesz > 0), `data` being a view of those bytes.
 */
export function parseElf(bytes) {
  if (!isElf(bytes)) throw new Error('not an ELF file (bad magic)');
  if (bytes[4] !== 1) throw new Error('not a 32-bit ELF (EI_CLASS != ELFCLASS32)');
  if (bytes[5] !== 1) throw new Error('not a little-endian ELF (EI_DATA != ELFDATA2LSB)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o) => view.getUint16(o, true);
  const u32 = (o) => view.getUint32(o, true);
  const need = (end, what) => {
    if (end > bytes.length) throw new Error(`truncated ELF: ${what} runs past the end of the file`);
  };
  need(52, 'header');
  const phoff = u32(28);
  const shoff = u32(32);
  const phentsize = u16(42);
  const phnum = u16(44);
  const shentsize = u16(46);
  const shnum = u16(48);

  const segments = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    need(ph + 32, 'program header');
    const [type, offset, vaddr, paddr, filesz, memsz] = [0, 4, 8, 12, 16, 20].map((o) => u32(ph + o));
    if (type !== PT_LOAD || filesz === 0) continue;
    need(offset + filesz, `segment ${i}`);
    segments.push({ paddr, vaddr, memsz, data: bytes.subarray(offset, offset + filesz) });
  }

  let symbols = null; // Map name -> { value, size }, built on first use
  const readSymbols = () => {
    symbols = new Map();
    if (!shoff) return;
    const sections = [];
    for (let i = 0; i < shnum; i++) {
      const sh = shoff + i * shentsize;
      need(sh + 40, 'section header');
      sections.push({ type: u32(sh + 4), offset: u32(sh + 16), size: u32(sh + 20), link: u32(sh + 24), entsize: u32(sh + 36) });
    }
    const decoder = new TextDecoder();
    for (const s of sections.filter((s) => s.type === SHT_SYMTAB)) {
      const strtab = sections[s.link];
      if (!strtab) continue;
      need(s.offset + s.size, '.symtab');
      need(strtab.offset + strtab.size, '.strtab');
      for (let off = s.offset; off + 16 <= s.offset + s.size; off += s.entsize || 16) {
        const nameOff = strtab.offset + u32(off);
        let end = nameOff;
        while (end < strtab.offset + strtab.size && bytes[end] !== 0) end++;
        const name = decoder.decode(bytes.subarray(nameOff, end));
        if (name && !symbols.has(name)) symbols.set(name, { value: u32(off + 4), size: u32(off + 8) });
      }
    }
  };

  return {
    segments,
    /** { value, size } of a symbol in .symtab, or undefined. */
    symbol(name) {
      if (!symbols) readSymbols();
      return symbols.get(name);
    },
  };
}
