/**
 * The test oracles (../shared/oracles: the real ZODB with its repozo, and
 * collective.recipe.backup's own functions), found in one place: beside the
 * repository, as in CI's clone, or where PLONE_BACKUP_ORACLES (their
 * setup.sh) says.
 *
 * Policy: where the oracles are missing a test that needs them is skipped,
 * except in CI (`CI` set), where it runs and fails, so that main never passes
 * with oracle tests silently left out. Use `{ skip: oracleSkip() }` (or
 * `recipeSourceSkip()`) on the test and call the helpers inside it.
 */
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './paths';

/** The oracles' setup.sh. */
export const ORACLE_SETUP = process.env.PLONE_BACKUP_ORACLES ? path.resolve(process.env.PLONE_BACKUP_ORACLES) : path.resolve(ROOT, '..', 'shared', 'oracles', 'setup.sh');
/** The oracles' folder (recipe_real.py, zodb_writer.py, recipe/, zodb/, ...). */
export const ORACLES = path.dirname(ORACLE_SETUP);
/** collective.recipe.backup's source (the folder holding collective/). */
export const RECIPE_SRC = path.join(ORACLES, 'recipe');
export const RECIPE_REAL = path.join(ORACLES, 'recipe_real.py');
export const ZODB_WRITER = path.join(ORACLES, 'zodb_writer.py');
/** Debian's python3: setup.sh installs the oracles' Python packages for it. */
export const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const inCI = (): boolean => !!process.env.CI;

let cached: { path?: string; problem?: string } | undefined;

/** Runs setup.sh once and checks that the real ZODB imports; the PYTHONPATH or why not. */
function lookup(): { path?: string; problem?: string } {
  if (cached) return cached;
  if (!fs.existsSync(ORACLE_SETUP)) return (cached = { problem: `no oracles at ${ORACLE_SETUP} (set PLONE_BACKUP_ORACLES to their setup.sh)` });
  const r = spawnSync('bash', [ORACLE_SETUP], { encoding: 'utf8' });
  const pp = r.stdout?.trim().split('\n').at(-1);
  if (r.status !== 0 || !pp) return (cached = { problem: `${ORACLE_SETUP} failed (${r.status}): ${r.stderr?.trim()}` });
  const ok = spawnSync(PYTHON, ['-c', 'import ZODB.FileStorage, ZODB.scripts.repozo, zc.lockfile'], { env: { ...process.env, PYTHONPATH: pp }, encoding: 'utf8' });
  if (ok.status !== 0) return (cached = { problem: `${PYTHON} cannot import the real ZODB with PYTHONPATH=${pp}: ${ok.stderr?.trim() ?? ok.error}` });
  return (cached = { path: pp });
}

/**
 * For `it(..., { skip })`: a reason to skip when the oracles (setup.sh, the
 * real ZODB in python3) are not there, false when they are, and always false
 * in CI, where the test then fails in `oraclePythonPath`.
 */
export function oracleSkip(): string | false {
  if (inCI()) return false;
  return lookup().problem ?? false;
}

/** The PYTHONPATH for the oracles (cached); throws, saying why, when they are missing. */
export function oraclePythonPath(): string {
  const r = lookup();
  if (!r.path) throw new Error(`The test oracles are needed${inCI() ? ' (CI: they must be there)' : ''}: ${r.problem}`);
  return r.path;
}

/** An environment for python3 with the oracles on its PYTHONPATH. */
export function oracleEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, PYTHONPATH: oraclePythonPath(), ...extra };
}

/**
 * For tests that need only python3 and the recipe's source (not the real
 * ZODB): a reason to skip when either is missing; false in CI (see oracleSkip).
 */
export function recipeSourceSkip(): string | false {
  if (inCI()) return false;
  if (!fs.existsSync(path.join(RECIPE_SRC, 'collective', 'recipe', 'backup', '__init__.py'))) return `no collective.recipe.backup source at ${RECIPE_SRC}`;
  if (spawnSync('python3', ['-c', 'pass']).status !== 0) return 'no python3';
  return false;
}

export interface PyRun {
  stdout: string;
  stderr: string;
}

/** Runs `python3 args` with the oracles' PYTHONPATH; rejects (with its output) unless it exits 0. */
export function runPython(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<PyRun> {
  const env = oracleEnv();
  return new Promise((resolve, reject) => {
    execFile(PYTHON, args, { env, cwd: opts.cwd, encoding: 'utf8', timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const e = err as Error & { code?: number | string; signal?: string };
        reject(new Error(`${path.basename(PYTHON)} ${args.join(' ')} failed (${e.code ?? e.signal}):\n${stderr}\n${stdout}`));
      } else resolve({ stdout, stderr });
    });
  });
}

export type RecipeAction = 'backup' | 'snapshot' | 'zip' | 'restore' | 'snapshotrestore' | 'ziprestore';

/**
 * Runs the real collective.recipe.backup's ACTION on `site` (its
 * var/filestorage/Data.fs and var/blobstorage) as part `part` with buildout
 * `options` (recipe_real.py: the script the recipe generates, with the real
 * repozo); `date` for the restores. Rejects unless it exits 0. Its log is on stderr.
 */
export function runRecipe(action: RecipeAction, site: string, part: string, options: Record<string, string> = {}, date?: string): Promise<PyRun> {
  const args = [RECIPE_REAL, action, site, part, ...Object.entries(options).map(([k, v]) => `${k}=${v}`)];
  if (date) args.push('--date', date);
  return runPython(args, { cwd: site });
}

/** Runs the real repozo (`python3 -m ZODB.scripts.repozo args`). */
export function runRepozo(args: string[], opts: { cwd?: string } = {}): Promise<PyRun> {
  return runPython(['-m', 'ZODB.scripts.repozo', ...args], opts);
}

/**
 * The real ZODB writing to `site` (var/filestorage/Data.fs, var/blobstorage)
 * for `seconds`: documents with blobs added, replaced and deleted, a pack
 * every `packEvery` seconds (Infinity: none). Returns its counts line.
 */
export async function runZodbWriter(site: string, seconds: number, packEvery = Infinity): Promise<string> {
  fs.mkdirSync(path.join(site, 'var', 'filestorage'), { recursive: true });
  const every = Number.isFinite(packEvery) ? String(packEvery) : '1e9';
  const r = await runPython([ZODB_WRITER, site, String(seconds), every], { cwd: site });
  return r.stdout.trim();
}
