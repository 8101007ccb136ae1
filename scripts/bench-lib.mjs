// What scripts/bench.mjs and scripts/bench-deploy.mjs share: the engine
// bundled for a script, a seeded PRNG, and the way every contender is run and
// the machine made comparable between trials (see "Honesty rules" in each).

import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { promises as fsp, existsSync } from 'node:fs';
import fse from 'fs-extra';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const TIME_BIN = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
export const log = (m) => process.stderr.write(`${m}\n`);

/** Bundles src/engine/index.ts to `outfile` with esbuild and loads it. */
export async function loadEngine(outfile) {
  await build({
    entryPoints: [path.join(ROOT, 'src', 'engine', 'internal.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    sourcemap: true,
    logLevel: 'warning',
  });
  return createRequire(import.meta.url)(outfile);
}

/** A small deterministic PRNG (mulberry32), so every generation makes the same data. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let timeSeq = 0;

/**
 * Runs a child process; seconds are wall clock from spawn to exit. With
 * `timed`, the child runs under /usr/bin/time (when there is one) to get its
 * CPU time as well: every contender is wrapped the same way.
 */
export function run(cmd, args, { capture = false, timed = false } = {}) {
  return new Promise((resolve, reject) => {
    const cpuFile = timed && TIME_BIN ? path.join(os.tmpdir(), `bench-time-${process.pid}-${timeSeq++}`) : undefined;
    const [bin, argv] = cpuFile ? [TIME_BIN, ['-f', '%U %S', '-o', cpuFile, cmd, ...args]] : [cmd, args];
    const t0 = performance.now();
    const child = spawn(bin, argv, { cwd: ROOT, stdio: ['ignore', capture ? 'pipe' : 'ignore', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', async (code, sig) => {
      const seconds = (performance.now() - t0) / 1000;
      let cpu;
      if (cpuFile) {
        const t = (await fsp.readFile(cpuFile, 'utf8').catch(() => '')).trim().split(/\s+/).map(Number);
        await fsp.rm(cpuFile, { force: true });
        if (t.length === 2 && t.every((x) => Number.isFinite(x))) cpu = { user: t[0], sys: t[1] };
      }
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? sig}): ${err.trim()}`));
      else resolve({ seconds, cpu, stdout: out, stderr: err });
    });
  });
}

/** CPU idle fraction over `ms` milliseconds, from /proc/stat (undefined where there is none). */
export async function idleFraction(ms) {
  const sample = async () => {
    const line = (await fsp.readFile('/proc/stat', 'utf8')).split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { idle: line[3], total: line.reduce((a, b) => a + b, 0) };
  };
  try {
    const a = await sample();
    await new Promise((r) => setTimeout(r, ms));
    const b = await sample();
    return b.total > a.total ? (b.idle - a.idle) / (b.total - a.total) : 1;
  } catch {
    return undefined;
  }
}

/** Waits (at most `seconds`) until the CPUs are at least 90% idle; returns the last idle fraction. */
export async function waitQuiet(seconds) {
  const until = performance.now() + seconds * 1000;
  let idle;
  do {
    idle = await idleFraction(500);
    if (idle === undefined || idle >= 0.9) return idle;
  } while (performance.now() < until);
  log(`  (the machine is still busy: ${(idle * 100).toFixed(0)}% idle; going on)`);
  return idle;
}

/** Touches `mb` of memory in a throwaway process: see "Memory" in scripts/bench.mjs. */
export async function hotMemory(mb) {
  if (!(mb > 0)) return;
  const code = `const a = []; for (let i = 0; i < ${Math.ceil(mb / 64)}; i++) a.push(Buffer.alloc(64 << 20, 1));`;
  await run(process.execPath, ['-e', code]);
}

export async function rmrf(p) {
  await fse.remove(p);
}

/** `p`, made empty (created, or emptied of a previous run's output). */
export async function newDir(p) {
  await fse.emptyDir(p);
  return p;
}
