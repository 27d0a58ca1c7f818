// Status and error codes returned by the WebAssembly decoder (assembly/inflate.ts).

export const Status = {
  DONE: 0,
  NEED_INPUT: 1,
  OUTPUT_FULL: 2,
  CHECKPOINT: 3,
  LIMIT: 4,
} as const;

/** Errors the decoder reports, by code. */
export const ERROR_MESSAGES: Record<number, string> = {
  [-1]: "not in gzip format (bad magic number)",
  [-2]: "unknown compression method",
  [-3]: "unknown gzip header flags set",
  [-4]: "gzip header crc mismatch",
  [-5]: "invalid block type",
  [-6]: "invalid stored block lengths",
  [-7]: "too many length or distance symbols",
  [-8]: "invalid code lengths set",
  [-9]: "invalid code -- missing end-of-block",
  [-10]: "invalid literal/length code",
  [-11]: "invalid distance code",
  [-12]: "invalid distance too far back",
  [-13]: "incorrect data check (crc32 mismatch)",
  [-14]: "incorrect length check (isize mismatch)",
  [-15]: "unexpected end of compressed data",
  [-16]: "trailing garbage after gzip member",
  [-17]: "invalid bit length repeat",
  [-18]: "gzip header too large",
  [-19]: "decoder used in an invalid state",
};

export const E_TRUNCATED = -15;
export const E_HEADER_TOO_LARGE = -18;

/** A corrupt, truncated or otherwise undecodable compressed stream. */
export class InflateError extends Error {
  override name = "InflateError";
  constructor(
    readonly code: number,
    message = ERROR_MESSAGES[code] ?? `inflate error ${code}`,
  ) {
    super(message);
  }
}
