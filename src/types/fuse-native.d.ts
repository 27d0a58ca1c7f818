// The slice of fuse-native 2.2.6 (CommonJS, `module.exports = Fuse`) that src/fs uses. Import it as
// `import Fuse from "fuse-native"` (esModuleInterop; Node's ESM loader hands the CJS export over as
// the default export, and vitest does the same).
//
// Facts from the package's index.js / fuse-native.c (libfuse 2.9 high-level API, FUSE_USE_VERSION 29):
// - every handler runs on the JS thread; callbacks take a negative errno (`Fuse.ENOENT` …) or 0;
// - stat times travel as milliseconds (uint32 pairs) and become `ms / 1000` s + `(ms % 1000) · 1e6` ns
//   in C: sub-millisecond precision cannot reach the kernel;
// - `ino`, `rdev`, `dev`, `nlink`, `mode`, `uid`, `gid`, `blksize` are uint32 in transit;
// - paths and names cross as UTF-8 JS strings (`napi_create_string_utf8`), so bytes that are not valid
//   UTF-8 arrive as U+FFFD;
// - the subclass hooks `_fuseOptions()` and `_op_<name>(signal, ...args)` are looked up at call time,
//   so a subclass can replace them (used for `use_ino`, xattr size negotiation and the read hot path).
declare module "fuse-native" {
  namespace Fuse {
    type Callback = (err: number) => void;

    interface Stat {
      mode?: number;
      uid?: number;
      gid?: number;
      size?: number;
      dev?: number;
      nlink?: number;
      ino?: number;
      rdev?: number;
      blksize?: number;
      blocks?: number;
      /** Date or milliseconds since the epoch; missing ⇒ now. */
      atime?: Date | number;
      mtime?: Date | number;
      ctime?: Date | number;
    }

    interface Statfs {
      bsize?: number;
      frsize?: number;
      blocks?: number;
      bfree?: number;
      bavail?: number;
      files?: number;
      ffree?: number;
      favail?: number;
      fsid?: number;
      flag?: number;
      namemax?: number;
    }

    interface Operations {
      init?(cb: Callback): void;
      access?(path: string, mode: number, cb: Callback): void;
      statfs?(path: string, cb: (err: number, statfs?: Statfs) => void): void;
      getattr?(path: string, cb: (err: number, stat?: Stat) => void): void;
      fgetattr?(path: string, fd: number, cb: (err: number, stat?: Stat) => void): void;
      flush?(path: string, fd: number, cb: Callback): void;
      fsync?(path: string, datasync: boolean, fd: number, cb: Callback): void;
      fsyncdir?(path: string, datasync: boolean, fd: number, cb: Callback): void;
      readdir?(path: string, cb: (err: number, names?: string[], stats?: Stat[]) => void): void;
      truncate?(path: string, size: number, cb: Callback): void;
      ftruncate?(path: string, fd: number, size: number, cb: Callback): void;
      utimens?(path: string, atime: number, mtime: number, cb: Callback): void;
      readlink?(path: string, cb: (err: number, linkname?: string) => void): void;
      chown?(path: string, uid: number, gid: number, cb: Callback): void;
      chmod?(path: string, mode: number, cb: Callback): void;
      mknod?(path: string, mode: number, dev: number, cb: Callback): void;
      setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Callback): void;
      getxattr?(path: string, name: string, position: number, cb: (err: number, value?: Buffer | null) => void): void;
      listxattr?(path: string, cb: (err: number, list?: string[]) => void): void;
      removexattr?(path: string, name: string, cb: Callback): void;
      open?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
      opendir?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
      read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
      write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
      release?(path: string, fd: number, cb: Callback): void;
      releasedir?(path: string, fd: number, cb: Callback): void;
      create?(path: string, mode: number, cb: (err: number, fd?: number) => void): void;
      unlink?(path: string, cb: Callback): void;
      rename?(src: string, dest: string, cb: Callback): void;
      link?(src: string, dest: string, cb: Callback): void;
      symlink?(src: string, dest: string, cb: Callback): void;
      mkdir?(path: string, mode: number, cb: Callback): void;
      rmdir?(path: string, cb: Callback): void;
    }

    /** `false` disables; an object gives per-operation values (`false` disables one) and a `default`. */
    type Timeout = number | false | ({ default?: number } & { [op: string]: number | false | undefined });

    interface Options {
      debug?: boolean;
      force?: boolean;
      mkdir?: boolean;
      allowOther?: boolean;
      allowRoot?: boolean;
      autoUnmount?: boolean;
      defaultPermissions?: boolean;
      maxRead?: number;
      fsname?: string;
      subtype?: string;
      kernelCache?: boolean;
      autoCache?: boolean;
      entryTimeout?: number;
      attrTimeout?: number;
      timeout?: Timeout;
    }

    /** The native reply function bound by fuse-native for one request: (errno | result, ...values). */
    type Signal = (res: number, ...values: unknown[]) => void;
  }

  class Fuse {
    constructor(mnt: string, ops: Fuse.Operations, opts?: Fuse.Options);
    readonly mnt: string;
    readonly opts: Fuse.Options;
    readonly ops: Fuse.Operations;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    /** The `-o…` argument handed to libfuse (fuse_mount and fuse_new); '' for none. */
    _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;

    static readonly EPERM: number;
    static readonly ENOENT: number;
    static readonly EIO: number;
    static readonly EBADF: number;
    static readonly EACCES: number;
    static readonly ENOTDIR: number;
    static readonly EISDIR: number;
    static readonly EINVAL: number;
    static readonly EROFS: number;
    static readonly ERANGE: number;
    static readonly ENOSYS: number;
    static readonly ENODATA: number;
    static readonly ETIMEDOUT: number;
    static readonly ENOTCONN: number;
  }

  export = Fuse;
}
