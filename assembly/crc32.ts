// CRC-32 (IEEE 802.3, reflected, as gzip uses), slice-by-16.
// Sixteen 256-entry tables let the loop fold 16 input bytes per iteration: the serial
// dependency through `c` is paid once per 16 bytes instead of once per byte.

const CRC_TABLES: usize = memory.data(16 * 256 * 4, 64);

export function crcInitTables(): void {
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    store<u32>(CRC_TABLES + (n << 2), c);
  }
  for (let n: u32 = 0; n < 256; n++) {
    let c = load<u32>(CRC_TABLES + (n << 2));
    for (let t: u32 = 1; t < 16; t++) {
      c = load<u32>(CRC_TABLES + ((c & 0xff) << 2)) ^ (c >>> 8);
      store<u32>(CRC_TABLES + (t << 10) + (n << 2), c);
    }
  }
}

@inline function tab(t: u32, i: u32): u32 {
  return load<u32>(CRC_TABLES + (t << 10) + ((i & 0xff) << 2));
}

/** Continue a CRC-32 (pre/post-conditioned like zlib's crc32()) over [ptr, ptr+len). */
export function crc32Update(crc: u32, ptr: usize, len: usize): u32 {
  let c = ~crc;
  const end = ptr + len;
  while (ptr < end && (ptr & 15) != 0) {
    c = tab(0, c ^ load<u8>(ptr)) ^ (c >>> 8);
    ptr++;
  }
  const end16 = end - ((end - ptr) & 15);
  while (ptr < end16) {
    const a = load<u32>(ptr) ^ c;
    const b = load<u32>(ptr, 4);
    const d = load<u32>(ptr, 8);
    const e = load<u32>(ptr, 12);
    c =
      tab(15, a) ^ tab(14, a >>> 8) ^ tab(13, a >>> 16) ^ tab(12, a >>> 24) ^
      tab(11, b) ^ tab(10, b >>> 8) ^ tab(9, b >>> 16) ^ tab(8, b >>> 24) ^
      tab(7, d) ^ tab(6, d >>> 8) ^ tab(5, d >>> 16) ^ tab(4, d >>> 24) ^
      tab(3, e) ^ tab(2, e >>> 8) ^ tab(1, e >>> 16) ^ tab(0, e >>> 24);
    ptr += 16;
  }
  while (ptr < end) {
    c = tab(0, c ^ load<u8>(ptr)) ^ (c >>> 8);
    ptr++;
  }
  return ~c;
}
