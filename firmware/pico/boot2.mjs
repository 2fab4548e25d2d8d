// The RP2040 boot ROM's check of the second-stage bootloader (boot2): the first 256 bytes of
// flash, whose last 4 bytes hold the CRC-32/MPEG-2 of the first 252 (little-endian word).

export const BOOT2_SIZE = 256;
export const BOOT2_CRC_OFFSET = 252;

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32/MPEG-2: poly 0x04C11DB7, init 0xFFFFFFFF, not reflected, no final XOR
 *  (check value for "123456789": 0x0376E6E7). */
export function crc32Mpeg2(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) crc = ((crc << 8) ^ TABLE[((crc >>> 24) ^ b) & 0xff]) >>> 0;
  return crc >>> 0;
}

/** { ok, stored, computed } for the 256 bytes of a boot2 area. */
export function checkBoot2(area) {
  if (area.length < BOOT2_SIZE) return { ok: false, stored: undefined, computed: undefined };
  const computed = crc32Mpeg2(area.subarray(0, BOOT2_CRC_OFFSET));
  const stored = (area[252] | (area[253] << 8) | (area[254] << 16) | (area[255] << 24)) >>> 0;
  return { ok: computed === stored, stored, computed };
}

/** Writes the CRC of the first 252 bytes into bytes 252..255 of a 256-byte boot2 area (in place). */
export function sealBoot2(area) {
  const crc = crc32Mpeg2(area.subarray(0, BOOT2_CRC_OFFSET));
  for (let i = 0; i < 4; i++) area[BOOT2_CRC_OFFSET + i] = (crc >>> (8 * i)) & 0xff;
  return area;
}
