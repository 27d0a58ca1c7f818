// One download, two readers: a blob streamed from the source registry feeds the index builder and
// the upload to the destination at once. The source is read only as fast as the slower reader
// allows (at most `maxQueuedBytes` wait for the lagging one); a reader that stops (returns, throws
// or is cancelled) no longer holds the other back; source errors reach both.

export interface Tee {
  /** Every chunk, as read from the source. */
  main: AsyncIterable<Uint8Array>;
  /** The same chunks (the same buffers: neither reader may modify or transfer them). */
  side: AsyncIterable<Uint8Array>;
  /** Stops feeding `side` (its consumer finished early, e.g. the blob was already there). */
  cancelSide(): void;
}

interface Branch {
  queue: Uint8Array[];
  bytes: number;
  detached: boolean;
  /** Wakes this branch when a chunk or the end arrives. */
  wake?: () => void;
}

export function teeStream(source: AsyncIterable<Uint8Array>, opts: { maxQueuedBytes?: number } = {}): Tee {
  const max = opts.maxQueuedBytes ?? 32 << 20;
  const it = source[Symbol.asyncIterator]();
  const branches: [Branch, Branch] = [
    { queue: [], bytes: 0, detached: false },
    { queue: [], bytes: 0, detached: false },
  ];
  let done = false;
  let failure: { error: unknown } | undefined;
  let pulling: Promise<void> | undefined;
  /** Wakes a reader waiting for the other branch to drain. */
  let drained: (() => void) | undefined;

  const wakeAll = (): void => {
    for (const b of branches) {
      const w = b.wake;
      b.wake = undefined;
      w?.();
    }
    const d = drained;
    drained = undefined;
    d?.();
  };

  const finishSource = (): void => {
    if (done) return;
    done = true;
    void it.return?.().catch(() => undefined);
  };

  const pull = (): Promise<void> => {
    pulling ??= (async () => {
      try {
        const r = await it.next();
        if (r.done) done = true;
        else {
          const [main, side] = branches;
          if (!main.detached) {
            main.queue.push(r.value);
            main.bytes += r.value.length;
          }
          if (!side.detached) {
            side.queue.push(r.value);
            side.bytes += r.value.length;
          }
        }
      } catch (error) {
        failure = { error };
        done = true;
      } finally {
        pulling = undefined;
        wakeAll();
      }
    })();
    return pulling;
  };

  const detach = (i: 0 | 1): void => {
    const b = branches[i];
    if (b.detached) return;
    b.detached = true;
    b.queue = [];
    b.bytes = 0;
    if (branches[0].detached && branches[1].detached) finishSource();
    wakeAll();
  };

  const reader = (i: 0 | 1): AsyncIterable<Uint8Array> => ({
    [Symbol.asyncIterator]: () => ({
      async next(): Promise<IteratorResult<Uint8Array>> {
        const me = branches[i];
        const other = branches[1 - i]!;
        for (;;) {
          if (me.detached) return { done: true, value: undefined };
          const c = me.queue.shift();
          if (c) {
            me.bytes -= c.length;
            if (me.bytes <= max / 2) {
              const d = drained;
              drained = undefined;
              d?.();
            }
            return { done: false, value: c };
          }
          if (failure) throw failure.error;
          if (done) return { done: true, value: undefined };
          if (!other.detached && other.bytes >= max) {
            // the other reader lags: wait for it instead of buffering without bound
            await new Promise<void>((r) => {
              drained = r;
            });
            continue;
          }
          if (pulling)
            await new Promise<void>((r) => {
              me.wake = r;
            });
          else await pull();
        }
      },
      async return(): Promise<IteratorResult<Uint8Array>> {
        detach(i);
        return { done: true, value: undefined };
      },
      async throw(e?: unknown): Promise<IteratorResult<Uint8Array>> {
        detach(i);
        throw e;
      },
    }),
  });

  return { main: reader(0), side: reader(1), cancelSide: () => detach(1) };
}
