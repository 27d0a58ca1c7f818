// The former name of BlobReader (./blobs.ts), still imported by registry/blob-source.ts.
export type { BlobReader as BlobSource } from "./blobs.js";
