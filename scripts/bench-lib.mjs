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
import { workerDefine } from './bundle.mjs';

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
    define: await workerDefine(),
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
 * CPU time as well: every contender is wrapped the same way. `env`: added
 * to the environment (the real repozo's PYTHONPATH).
 */
export function run(cmd, args, { capture = false, timed = false, env } = {}) {
  return new Promise((resolve, reject) => {
    const cpuFile = timed && TIME_BIN ? path.join(os.tmpdir(), `bench-time-${process.pid}-${timeSeq++}`) : undefined;
    const [bin, argv] = cpuFile ? [TIME_BIN, ['-f', '%U %S', '-o', cpuFile, cmd, ...args]] : [cmd, args];
    const t0 = performance.now();
    const child = spawn(bin, argv, { cwd: ROOT, env: env ? { ...process.env, ...env } : process.env, stdio: ['ignore', capture ? 'pipe' : 'ignore', 'pipe'] });
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

// ---------------------------------------------------------------------------
// The trials and their report (the same for every benchmark)

/** The knobs every benchmark reads from the environment (see the head of scripts/bench.mjs). */
export function settings(env = process.env) {
  return {
    rounds: Number(env.BENCH_ROUNDS ?? 3),
    warmupRounds: Number(env.BENCH_WARMUP_ROUNDS ?? 1),
    only: env.BENCH_CASES ? new Set(env.BENCH_CASES.split(',').map((s) => s.trim())) : undefined,
    nodeArgs: (env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean),
    quietWait: Number(env.BENCH_QUIET_WAIT ?? 60),
    hotMb: Number(env.BENCH_HOT_MB ?? 2048),
    cli: path.resolve(ROOT, env.BENCH_CLI ?? path.join('dist', 'cli.js')),
  };
}

/**
 * The cases `only` names (all when undefined), the `always` ones, and,
 * transitively, those their targets are measured against.
 */
export function selectCases(cases, only, always = []) {
  const byId = new Map(cases.map((c) => [c.id, c]));
  const wanted = new Set();
  const want = (id) => {
    if (wanted.has(id)) return;
    wanted.add(id);
    const c = byId.get(id);
    if (c?.target?.of) want(c.target.of);
    if (c?.target?.minus) want(c.target.minus);
  };
  for (const c of cases) if (!only || only.has(c.id) || always.includes(c.id)) want(c.id);
  return cases.filter((c) => wanted.has(c.id));
}

/**
 * The trial loop. Each case is { id, inputs, setup?, cmd, check?, cleanup? }:
 * `cmd` starts the contender as a child process (run(..., { timed: true }))
 * and resolves to its seconds and CPU time. Round-robin over the cases, after
 * `warmupRounds` untimed rounds; before each trial: the inputs read through
 * the page cache (`warm`), a wait for quiet CPUs, freshly backed memory (see
 * "Memory" in scripts/bench.mjs), the setup (which removes the previous
 * output), then `sync`. A failed check stops the benchmark.
 * Returns case id -> its timed trials.
 */
export async function runTrials(cases, { rounds, warmupRounds, quietWait, hotMb, warm }) {
  const trials = Object.fromEntries(cases.map((c) => [c.id, []]));
  const width = Math.max(...cases.map((c) => c.id.length)) + 2;
  for (let round = 1 - warmupRounds; round <= rounds; round++) {
    for (const c of cases) {
      await warm(...c.inputs);
      const idle = await waitQuiet(quietWait);
      await hotMemory(hotMb);
      await c.setup?.();
      await run('sync', []);
      const r = await c.cmd();
      const ok = c.check ? await c.check(r) : true;
      if (ok !== true) throw new Error(`${c.id}: ${ok}`);
      await c.cleanup?.();
      if (round >= 1) trials[c.id].push({ seconds: r.seconds, cpu: r.cpu, idleBefore: idle });
      const cpu = r.cpu ? `  (cpu ${r.cpu.user.toFixed(2)} user + ${r.cpu.sys.toFixed(2)} sys)` : '';
      log(`${round >= 1 ? `round ${round}` : 'warm-up'}: ${c.id.padEnd(width)} ${r.seconds.toFixed(3)} s${cpu}`);
    }
  }
  return trials;
}

/** What a target says: "< N s", "≤ N % of X" (for small fractions) or "≤ N × X". */
function targetText(t) {
  if (t.seconds !== undefined) return `< ${t.seconds} s`;
  return t.max < 0.2 ? `≤ ${(t.max * 100).toFixed(0)} % of ${t.of}` : `≤ ${t.max} × ${t.of}`;
}

/**
 * The best trial of each case, its CPU time, every trial, and whether the
 * case met its target: { seconds } (absolute) or { of, max, minus? } (its
 * time, less the `minus` case's, over the `of` case's). Returns the results
 * and the best seconds by case id.
 */
export function summarize(cases, trials) {
  const bestTrial = Object.fromEntries(Object.entries(trials).map(([k, v]) => [k, v.reduce((a, b) => (b.seconds < a.seconds ? b : a))]));
  const best = Object.fromEntries(Object.entries(bestTrial).map(([k, v]) => [k, v.seconds]));
  const results = cases.map((c) => {
    const s = best[c.id];
    const cpu = bestTrial[c.id].cpu;
    const r = {
      id: c.id,
      name: c.name,
      seconds: +s.toFixed(3),
      cpuSeconds: cpu ? +(cpu.user + cpu.sys).toFixed(2) : undefined,
      user: cpu?.user,
      sys: cpu?.sys,
      trials: trials[c.id].map((t) => ({
        seconds: +t.seconds.toFixed(3),
        user: t.cpu?.user,
        sys: t.cpu?.sys,
        idleBefore: t.idleBefore === undefined ? undefined : +t.idleBefore.toFixed(2),
      })),
    };
    const t = c.target;
    if (t) {
      r.target = targetText(t);
      if (t.seconds !== undefined) r.met = s < t.seconds;
      else {
        r.ratio = +((t.minus ? s - best[t.minus] : s) / best[t.of]).toFixed(3);
        r.of = t.of;
        if (t.minus) {
          r.minus = t.minus;
          r.ratioWhole = +(s / best[t.of]).toFixed(3);
        }
        r.met = r.ratio <= t.max;
      }
    }
    return r;
  });
  return { results, best };
}

/**
 * Prints the report: a line about the data and the machine, a Markdown table
 * (`columns`: [heading, right-aligned?, (result) => cell]) with the target
 * and whether it was met last, then the notes (trials started on a busy
 * machine included).
 */
export function printReport({ about, columns, results, notes = [] }) {
  const all = [...columns, ['target', false, (r) => r.target ?? ''], ['met', false, (r) => (r.met === undefined ? '' : r.met ? 'yes' : '**no**')]];
  const lines = [
    about,
    '',
    `| case | ${all.map(([h]) => h).join(' | ')} |`,
    `| --- | ${all.map(([, right]) => (right ? '---:' : '---')).join(' | ')} |`,
    ...results.map((r) => `| ${r.name} | ${all.map(([, , cell]) => cell(r)).join(' | ')} |`),
  ];
  const busy = results.flatMap((r) => r.trials).filter((t) => t.idleBefore !== undefined && t.idleBefore < 0.9).length;
  if (busy) notes = [...notes, `Note: ${busy} trial(s) started while the machine was busy (CPUs < 90% idle); re-run for cleaner figures.`];
  for (const n of notes) lines.push('', n);
  console.log(lines.join('\n'));
}

/** `about` for the report: best of how many rounds, node, the CPUs. */
export function aboutRun({ rounds, warmupRounds }) {
  return `best of ${rounds} after ${warmupRounds} untimed warm-up round(s); node ${process.version}; ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}`;
}

/** Writes the results JSON (under the machine's description and the run's settings) to `file`. */
export async function writeResults(file, s, extra) {
  const json = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGB: +(os.totalmem() / 2 ** 30).toFixed(1),
    rounds: s.rounds,
    warmupRounds: s.warmupRounds,
    hotMemoryMB: s.hotMb,
    cli: path.relative(ROOT, s.cli),
    nodeArgs: s.nodeArgs,
    ...extra,
  };
  await fsp.writeFile(file, JSON.stringify(json, null, 2) + '\n');
  log(`wrote ${path.relative(ROOT, file)}`);
}

/**
 * The real repozo (the test oracles' ZODB, ../shared/oracles/setup.sh or
 * PLONE_BACKUP_ORACLES): { python, env } to run `python -m ZODB.scripts.repozo`,
 * or undefined (with the reason logged) when it is not there.
 */
export async function findRealRepozo() {
  const setup = process.env.PLONE_BACKUP_ORACLES ? path.resolve(process.env.PLONE_BACKUP_ORACLES) : path.resolve(ROOT, '..', 'shared', 'oracles', 'setup.sh');
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  if (!existsSync(setup)) {
    log(`no real repozo: ${setup} is missing (set PLONE_BACKUP_ORACLES); its cases are left out`);
    return undefined;
  }
  try {
    const pp = (await run('bash', [setup], { capture: true })).stdout.trim().split('\n').at(-1);
    const env = { PYTHONPATH: pp };
    await run(python, ['-c', 'import ZODB.scripts.repozo'], { env });
    return { python, env };
  } catch (e) {
    log(`no real repozo (${e.message}); its cases are left out`);
    return undefined;
  }
}
