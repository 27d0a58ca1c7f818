// The table of contents of a layer: one record per tar entry, as the reference's ztoc stores it
// (docs/formats.md §1.1, §1.4). Names, link targets, user/group names and PAX values are raw bytes.

export type EntryType = "reg" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

/** One PAX record of an entry (the ztoc calls them "xattrs": it keeps ALL records). */
export interface PaxRecord {
  key: Uint8Array;
  value: Uint8Array;
}

/** A ztoc FileMetadata. */
export interface FileMetadata {
  name: Uint8Array;
  type: EntryType;
  /** Offset in the uncompressed tar of the entry's first data byte. */
  uncompressedOffset: number;
  uncompressedSize: number;
  linkname: Uint8Array;
  /** Raw tar mode field (permission, setuid/setgid/sticky, and any type bits the header had). */
  mode: number;
  uid: number;
  gid: number;
  uname: Uint8Array;
  gname: Uint8Array;
  /** Go `time.Time.MarshalText` of the entry's mtime, as stored in the ztoc (e.g. "2023-11-14T22:13:20Z"). */
  modTime: string;
  devmajor: number;
  devminor: number;
  /** Every PAX record of the entry, sorted bytewise by key. */
  xattrs: PaxRecord[];
  /** Start of the entry's header blocks (not serialized; recomputed when a ztoc is read). */
  tarHeaderOffset: number;
}
