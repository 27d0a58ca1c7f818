// Per-thread CPU of this process from /proc/self/task/*/schedstat: time on a core and time runnable
// but waiting for one. Differences of two snapshots say where a run's wall clock went: which
// threads computed, which waited for a core (a loaded machine), and how long a thread was blocked.
import { readdirSync, readFileSync } from "node:fs";

export interface ThreadTimes {
  /** ms on a core, by thread id. */
  cpu: Map<number, number>;
  /** ms runnable but waiting for a core, by thread id. */
  wait: Map<number, number>;
}

export function threadTimes(): ThreadTimes {
  const cpu = new Map<number, number>();
  const wait = new Map<number, number>();
  for (const t of readdirSync("/proc/self/task")) {
    try {
      const [run, queued] = readFileSync(`/proc/self/task/${t}/schedstat`, "utf8").split(" ");
      cpu.set(Number(t), Number(run) / 1e6);
      wait.set(Number(t), Number(queued) / 1e6);
    } catch {
      // the thread exited meanwhile
    }
  }
  return { cpu, wait };
}

export interface RunThreads {
  /** CPU of every thread, ms. */
  total: number;
  /** The main thread's CPU. */
  main: number;
  /** Threads started during the run (e.g. a pool's workers): CPU, wait for a core, blocked. */
  started: { cpu: number; wait: number; blocked: number; count: number };
  /** Threads that existed before (V8's compile and GC helpers, libuv's pool), main excepted. */
  others: number;
}

/** Splits the CPU between two snapshots; `after` must be taken before the run's threads exit. */
export function runThreads(before: ThreadTimes, after: ThreadTimes, wallMs: number): RunThreads {
  const r: RunThreads = { total: 0, main: 0, started: { cpu: 0, wait: 0, blocked: 0, count: 0 }, others: 0 };
  for (const [tid, cpu] of after.cpu) {
    const d = cpu - (before.cpu.get(tid) ?? 0);
    r.total += d;
    if (tid === process.pid) r.main += d;
    else if (!before.cpu.has(tid)) {
      const wait = after.wait.get(tid)! - (before.wait.get(tid) ?? 0);
      r.started.cpu += d;
      r.started.wait += wait;
      r.started.blocked += wallMs - d - wait;
      r.started.count++;
    } else r.others += d;
  }
  return r;
}
