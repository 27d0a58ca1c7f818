// Live progress for index builds: on a terminal, one status line rewritten in place; otherwise
// nothing beyond the per-layer result lines.
import type { LayerProgress } from "../indexer/index-builder.js";

export function terminalProgress(out: NodeJS.WriteStream = process.stdout): {
  progress?: LayerProgress;
  log(line: string): void;
} {
  if (!out.isTTY) return { log: (line) => out.write(`${line}\n`) };
  const layers = new Map<string, { done: number; total: number }>();
  const started = performance.now();
  let shown = false;
  let last = 0;
  const clear = () => {
    if (shown) out.write("\r\x1b[2K");
    shown = false;
  };
  const draw = () => {
    let done = 0;
    let total = 0;
    for (const l of layers.values()) {
      done += l.done;
      total += l.total;
    }
    const secs = (performance.now() - started) / 1000;
    const rate = done / 1e6 / Math.max(secs, 0.001);
    const eta = rate > 0 ? (total - done) / 1e6 / rate : 0;
    clear();
    out.write(
      `indexing ${layers.size} layer(s): ${((100 * done) / Math.max(total, 1)).toFixed(0)}% ` +
        `${(done / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB, ${rate.toFixed(0)} MB/s, ETA ${eta.toFixed(0)}s`,
    );
    shown = true;
  };
  return {
    progress: {
      update(digest, done, total) {
        layers.set(digest, { done, total });
        const now = performance.now();
        if (now - last > 100) {
          last = now;
          draw();
        }
      },
      finish(digest) {
        const l = layers.get(digest);
        if (l) l.done = l.total;
      },
    },
    log(line) {
      clear();
      out.write(`${line}\n`);
      if (layers.size > 0 && [...layers.values()].some((l) => l.done < l.total)) draw();
    },
  };
}
