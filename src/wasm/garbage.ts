// Large short-lived buffers (spans: fetched, sent to and from the inflate worker, loaded from the
// cache) live outside V8's heap, and V8 frees one only when a GC finds its small JS object dead.
// The daemon allocates little else, so nothing triggers a GC until V8's external-memory limit
// (tens of MB per thread) of dead spans has piled up — resident memory the daemon does not use.
// Where gc is exposed (the daemon runs node with --expose-gc) we collect after every few spans'
// worth of such buffers; elsewhere this is a no-op.

const gc = (globalThis as { gc?: (opts?: { type: "minor" | "major" }) => void }).gc;
/** Bytes of large buffers dropped between collections. */
const BUDGET = 8 << 20;
/** Every this many collections is a full one. */
const MAJOR_EVERY = 3;
const dropped = { bytes: 0 };
let collections = 0;

/** Adds `bytes` to `counter`: true (and the counter starts again) once BUDGET bytes were counted. */
function budgetSpent(counter: { bytes: number }, bytes: number): boolean {
  counter.bytes += bytes;
  if (counter.bytes < BUDGET) return false;
  counter.bytes = 0;
  return true;
}

/** Counts `bytes` of large buffers that are (about to be) dropped; collects once enough were. */
export function noteDroppedBuffers(bytes: number): void {
  if (!gc || !budgetSpent(dropped, bytes)) return;
  // a scavenge (well under a millisecond) frees the buffers that died young; those in use across
  // two scavenges (a span waiting for the network, a read in flight) were promoted and need a
  // full collection now and then — without one their memory waits for V8's external-memory limit
  gc({ type: ++collections % MAJOR_EVERY === 0 ? "major" : "minor" });
}

const young = { bytes: 0 };

/**
 * Counts `bytes` of buffers that die young: made and dropped within one request (a FUSE read's
 * answer, copied into the kernel's buffer). A scavenge frees them, so enough of them trigger only
 * that: reading a whole image through FUSE would otherwise pile tens of MB of answers up between
 * V8's own collections, and a full collection per few MB read would cost time.
 */
export function noteYoungGarbage(bytes: number): void {
  if (gc && budgetSpent(young, bytes)) gc({ type: "minor" });
}

/**
 * A scavenge now (where gc is exposed): the inflate worker calls it before each span, so the
 * previous span's input (moved to it, dead once inflated) never piles up there.
 */
export function collectYoung(): void {
  gc?.({ type: "minor" });
}
