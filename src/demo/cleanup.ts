// Undo steps for everything the demo starts (processes, mounts, temp dirs), run last-in first-out
// on success, on failure and on Ctrl-C / SIGTERM.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";

const run = promisify(execFile);

export class Cleanup {
  private steps: Array<{ what: string; fn: () => Promise<void> | void }> = [];
  private finals: Array<{ what: string; fn: () => Promise<void> | void }> = [];
  private late = new Set<Promise<void>>();
  private running: Promise<void> | undefined;
  /** Set once an interrupt arrived: steps added from then on run at once. */
  aborted = false;

  /** Registers an undo step; returns a function that runs (and forgets) just that step. */
  add(what: string, fn: () => Promise<void> | void): () => Promise<void> {
    const step = { what, fn };
    if (this.aborted) {
      // something started while the interrupt was being handled: undo it right away
      const p = this.runStep(step, (l) => process.stderr.write(`${l}\n`));
      this.late.add(p);
      return () => p;
    }
    this.steps.push(step);
    return async () => {
      const i = this.steps.indexOf(step);
      if (i < 0) return;
      this.steps.splice(i, 1);
      await step.fn();
    };
  }

  /** A step that runs after all others, every time `run` finishes (e.g. removing the temp root). */
  final(what: string, fn: () => Promise<void> | void): void {
    this.finals.push({ what, fn });
  }

  private async runStep(
    step: { what: string; fn: () => Promise<void> | void },
    report: (line: string) => void,
  ): Promise<void> {
    try {
      await step.fn();
    } catch (e) {
      report(`cleanup: ${step.what}: ${(e as Error).message}`);
    }
  }

  /** Runs every step, newest first, then the final ones; a failing step is reported and the rest still run. */
  run(report: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<void> {
    this.running ??= (async () => {
      while (this.steps.length || this.late.size) {
        const step = this.steps.pop();
        if (step) await this.runStep(step, report);
        else {
          const pending = [...this.late];
          this.late.clear();
          await Promise.all(pending);
        }
      }
      for (const f of this.finals) await this.runStep(f, report);
      this.running = undefined;
    })();
    return this.running;
  }

  /**
   * On SIGINT, SIGTERM or SIGHUP: marks the run aborted, runs the steps (twice, to catch what the
   * interrupted code started meanwhile), then exits with 128 + the signal number. Returns a
   * function that removes the handlers.
   */
  onSignals(report?: (line: string) => void): () => void {
    const codes: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
    const handlers = Object.entries(codes).map(([sig, n]) => {
      const h = () => {
        if (this.aborted) return;
        this.aborted = true;
        report?.(`\n${sig}: cleaning up…`);
        void (async () => {
          await this.run(report);
          await new Promise((r) => setTimeout(r, 300));
          await this.run(report);
        })().finally(() => process.exit(128 + n));
      };
      process.on(sig, h);
      return [sig, h] as const;
    });
    return () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    };
  }
}

/** Mount points at or below `dir`, deepest first (octal escapes of /proc/mounts decoded). */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const raw = line.split(" ")[1];
    if (!raw) continue;
    const target = raw.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (target === dir || target.startsWith(dir + "/")) out.push(target);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Lazily unmounts everything at or below `dir`. */
export async function unmountUnder(dir: string): Promise<void> {
  for (const m of mountsUnder(dir)) await run("umount", ["-l", m]).catch(() => undefined);
}
