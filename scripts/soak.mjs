// A long run (not part of `npm test`): a writer process keeps committing
// documents and blobs to a sample deployment (pausing between vote and finish
// at times, and packing now and then, which renames Data.fs and removes old
// blob revisions), while the CLI runs a deployment backup every ~2 seconds
// (every tenth a fullbackup). Then every generation is restored into a temp
// folder and checked (the drill: every transaction read, the index matches,
// every referenced blob present), every chain verified, and the deployment
// checked. Prints the figures; exits non-zero on any problem.
//
//   npm run pretest && SOAK_MINUTES=3 node scripts/soak.mjs
//
// SOAK_MINUTES (default 3), SOAK_INTERVAL_MS (default 2000), SOAK_PACK_MS
// (the writer packs this often, default 20000), SOAK_SEED (default 1).
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENGINE = path.join(ROOT, 'out', 'src', 'engine', 'internal.js');
const SUPPORT = path.join(ROOT, 'out', 'test', 'support');
const WRITER = path.join(SUPPORT, 'writer-process.js');
const CLI = path.join(ROOT, 'dist', 'cli.js');
for (const f of [ENGINE, WRITER, CLI]) {
  if (!fs.existsSync(f)) {
    console.error(`${f} is missing: run npm run pretest first.`);
    process.exit(2);
  }
}
const require = createRequire(import.meta.url);
const E = require(ENGINE);
// The test suite's own checks (test/support, compiled by npm run pretest).
const { consistency, consistencyProblems } = require(path.join(SUPPORT, 'assert.js'));
const { chainProblems } = require(path.join(SUPPORT, 'repo.js'));
const { writerArgv } = require(WRITER);

const MINUTES = Number(process.env.SOAK_MINUTES ?? 3);
const INTERVAL = Number(process.env.SOAK_INTERVAL_MS ?? 2000);
const PACK_MS = Number(process.env.SOAK_PACK_MS ?? 20000);
const SEED = Number(process.env.SOAK_SEED ?? 1);

function cli(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PLONE_BACKUP_DEBUG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const problems = [];
const figures = {
  minutes: MINUTES,
  backupsTried: 0,
  backupsMade: 0,
  actions: { full: 0, incremental: 0, none: 0 },
  restartsAfterPacks: 0,
  failures: 0,
  generationsDrilled: 0,
  generationsOk: 0,
  chainsVerified: 0,
  writer: undefined,
  seconds: 0,
};

const t0 = Date.now();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-soak-'));
const site = path.join(root, 'site');
fs.mkdirSync(site);
const writer = spawn(process.execPath, [WRITER, ...writerArgv({ root: site, seed: SEED, packEveryMs: PACK_MS, minPauseMs: 5, maxPauseMs: 25 })], {
  stdio: ['pipe', 'pipe', 'pipe'],
});
let wout = '';
let werr = '';
writer.stdout.on('data', (d) => (wout += d));
writer.stderr.on('data', (d) => (werr += d));
const writerExit = new Promise((r) => writer.on('exit', r));
try {
  for (let i = 0; !wout.includes('ready'); i++) {
    if (writer.exitCode !== null || i > 400) throw new Error(`the writer did not start: ${werr}`);
    await sleep(25);
  }
  const until = Date.now() + MINUTES * 60_000;
  let n = 0;
  while (Date.now() < until) {
    const started = Date.now();
    n++;
    const kind = n % 10 === 0 ? 'fullbackup' : 'backup';
    figures.backupsTried++;
    const r = await cli([kind, '--dir', site, '--keep', '100000', '--json']);
    if (r.status === 0) {
      const [res] = JSON.parse(r.stdout);
      figures.backupsMade++;
      figures.actions[res.filestorage.action]++;
      if (res.attempts > 1) figures.restartsAfterPacks++;
    } else {
      figures.failures++;
      problems.push(`${kind} ${n} failed (${r.status}): ${r.stderr.trim()}`);
    }
    process.stderr.write(`\r${Math.round((Date.now() - t0) / 1000)} s: ${figures.backupsMade} backups, ${figures.restartsAfterPacks} restarts, ${figures.failures} failures`);
    const wait = INTERVAL - (Date.now() - started);
    if (wait > 0) await sleep(wait);
  }
  process.stderr.write('\n');
} finally {
  writer.stdin.end();
}
const code = await writerExit;
if (code !== 0) problems.push(`the writer failed (${code}): ${werr}`);
else figures.writer = JSON.parse(wout.trim().split('\n').pop());

// The final, quiet state once more, then everything restored and checked.
const last = await cli(['backup', '--dir', site, '--keep', '100000', '--json']);
if (last.status !== 0) problems.push(`the last backup failed: ${last.stderr}`);
const dep = await E.discoverDeployment(site, { keep: 100000 });
const repo = E.foldersFor(dep.storages[0], 'backup').repo;
const chains = await chainProblems(repo);
figures.chainsVerified = chains.chains;
problems.push(...chains.problems);
const drills = await E.drillDeployment(dep, { all: true });
for (const d of drills) {
  figures.generationsDrilled++;
  if (d.ok) figures.generationsOk++;
  else problems.push(`generation ${d.stamp}: ${d.problems.join('; ')}`);
}
const views = await E.listDeployment(dep);
for (const c of views[0].groups[0].chains) {
  for (const p of [c.full, ...c.incrementals]) if (p.blob.status !== 'match') problems.push(`${p.stamp}: blob generation ${p.blob.status}`);
}
const findings = (await E.checkDeployment(dep)).filter((f) => f.severity !== 'info');
for (const f of findings) problems.push(`check: ${f.severity} ${f.code}: ${f.message}`);
// The live site itself is consistent, and the newest backup is its final state.
problems.push(...consistencyProblems(await consistency(dep.storages[0].file, dep.storages[0].blobDir), 'the live site'));
const st = await E.committedEnd(dep.storages[0].file);
const cmp = spawnSync(process.execPath, [CLI, 'repozo', '-R', '-r', repo], { maxBuffer: 1 << 30 });
const live = fs.readFileSync(dep.storages[0].file).subarray(0, st.end);
if (!Buffer.from(cmp.stdout).equals(live)) problems.push('the newest backup does not recover the final Data.fs');
figures.seconds = Math.round((Date.now() - t0) / 1000);
figures.problems = problems.length;

console.log(JSON.stringify(figures, null, 2));
if (problems.length) {
  for (const p of problems.slice(0, 50)) console.error(`PROBLEM: ${p}`);
  console.error(`${problems.length} problems; the deployment is kept at ${site}`);
  process.exit(1);
}
fs.rmSync(root, { recursive: true, force: true });
console.log(
  `soak: ${figures.backupsMade} backups in ${MINUTES} min (${figures.restartsAfterPacks} restarted after packs, ${figures.failures} failed), ${figures.generationsOk}/${figures.generationsDrilled} generations restored and checked`,
);
