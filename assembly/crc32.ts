// CRC-32 (IEEE 802.3, reflected, as gzip uses), slice-by-8.
// Eight 256-entry tables let the loop fold 8 input bytes per iteration.

const CRC_TABLES: usize = memory.data(8 * 256 * 4, 64);

export function crcInitTables(): void {
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    store<u32>(CRC_TABLES + (n << 2), c);
  }
  for (let n: u32 = 0; n < 256; n++) {
    let c = load<u32>(CRC_TABLES + (n << 2));
    for (let t: u32 = 1; t < 8; t++) {
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
  while (ptr < end && (ptr & 7) != 0) {
    c = tab(0, c ^ load<u8>(ptr)) ^ (c >>> 8);
    ptr++;
  }
  const end8 = end - ((end - ptr) & 7);
  while (ptr < end8) {
    const lo = load<u32>(ptr) ^ c;
    const hi = load<u32>(ptr, 4);
    c =
      tab(7, lo) ^ tab(6, lo >>> 8) ^ tab(5, lo >>> 16) ^ tab(4, lo >>> 24) ^
      tab(3, hi) ^ tab(2, hi >>> 8) ^ tab(1, hi >>> 16) ^ tab(0, hi >>> 24);
    ptr += 8;
  }
  while (ptr < end) {
    c = tab(0, c ^ load<u8>(ptr)) ^ (c >>> 8);
    ptr++;
  }
  return ~c;
}
