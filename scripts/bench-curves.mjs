#!/usr/bin/env node
// Scaling curves (issue 11, goal 4): each operation's time against the size
// of what it works on, so the growth is visible. Data.fs of 1 GiB (1 million
// objects) and 10 GiB (10 million objects, ~1 KB records); sites of 20,000,
// 200,000 and 1,000,000 small blob files. Everything is generated once by
// scripts/bench-gen.mjs and cached in bench-data/.
//
//   npm run build && node scripts/bench-curves.mjs        # BENCH_CURVES=small
//   BENCH_CURVES=full node scripts/bench-curves.mjs        # + 10 GiB and 1,000,000 files (an hour or more)
//   BENCH_CURVES=off                                       # nothing (npm run bench then skips it)
//   BENCH_CURVES_DATAFS=1G,10G BENCH_CURVES_BLOBS=20000    # pick sizes yourself ('' for none)
//   BENCH_CURVES_SVG_ONLY=1                                # redraw media/bench-curves.svg from the saved results
//   BENCH_CASES=index,full-plain-repozo                    # only these Data.fs cases (ids in DATAFS_OPS)
//   BENCH_CURVES_FROM_LOGS=a.log,b.log                     # add what stopped runs measured, read from their stderr
//
// small = 1 GiB, 20,000 and 200,000 files; full = all sizes. Each run merges
// its figures into bench-data/results-curves.json (by size and case), prints
// the tables of every figure saved, and redraws media/bench-curves.svg from
// them, so a 10 GiB run can be added to a small one later.
//
// Operations, on a Data.fs: full backup plain and gzip (`plone-backup repozo
// -B -F [-z]`), an incremental backup after a small commit (100 objects of
// ~1 KB appended, then `-B -Q`), full restore (`-R -o`), verify (`-V`), the
// index build (the engine's rebuildIndex + writeIndexFile, as a backup writes
// it: streamed, fsynced, in a child process), `check` and `list` of a deployment whose backups are
// that repository. Anchors on the same data in the same run: the real
// repozo for backup, restore and verify, and ZODB's own index build
// (FileStorage opened read-only without its .index); at 10 GiB the slow
// anchors (repozo -z, ZODB's index build) run only with
// BENCH_CURVES_SLOW_ANCHORS=1. On a blob site: the first backup (blob pool),
// a backup after 10 new blob files (pool, and hard-link trees for
// comparison), a full restore (hard links), `check`; anchors: rsync's first
// copy, `rsync -a --delete --link-dest` for the 10 new files, `rsync -a` of
// the site's blobstorage for the restore.
//
// Trials: the machinery of bench-lib (runTrials: round-robin, a wait for
// quiet CPUs, sync before each trial; best of BENCH_ROUNDS, default 3, no
// untimed warm-up round unless BENCH_WARMUP_ROUNDS says so); the biggest
// sizes (10 GiB, 1,000,000 files) get one trial each. The page cache is
// warmed by reading the inputs only for files up to 4 GiB. BENCH_QUIET_WAIT
// defaults to 3 s here. The incremental's appends are cut off again at the
// end, so the cached Data.fs stays as generated.

import { ROOT, findRealRepozo, log, run, runTrials, settings, summarize } from './bench-lib.mjs';
import { DATA, DATAFS_SIZES, GIB, addBlobs, appendCommit, dataFsPaths, engine, ensureBlobSite, ensureDataFs, truncateTo } from './bench-gen.mjs';
import { rng } from './bench-lib.mjs';
import { promises as fsp, existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const MODE = process.env.BENCH_CURVES ?? 'small';
const S = settings({ BENCH_QUIET_WAIT: '3', BENCH_WARMUP_ROUNDS: '0', BENCH_HOT_MB: '0', ...process.env });
const CLI = S.cli;
const RESULTS = path.join(DATA, 'results-curves.json');
/** Trial outputs (removed after each size); BENCH_CURVES_WORK lets two runs (a Data.fs one and a blob one) go side by side. */
const WORK = process.env.BENCH_CURVES_WORK ? path.resolve(process.env.BENCH_CURVES_WORK) : path.join(DATA, 'curves');
const SVG = path.join(ROOT, 'media', 'bench-curves.svg');
const SLOW_ANCHORS = process.env.BENCH_CURVES_SLOW_ANCHORS === '1';
const list = (v, dflt) => (v === undefined ? dflt : v.split(',').filter(Boolean));
const DATAFS = list(process.env.BENCH_CURVES_DATAFS, MODE === 'full' ? ['1G', '10G'] : MODE === 'small' ? ['1G'] : []);
const BLOBS = list(process.env.BENCH_CURVES_BLOBS, MODE === 'full' ? ['20000', '200000', '1000000'] : MODE === 'small' ? ['20000', '200000'] : []).map(Number);
const BIG_BYTES = 4 * GIB;
const BIG_FILES = 500_000;

// ---------------------------------------------------------------------------
// The operations (ids, names, and what they are measured against)

const DATAFS_OPS = [
  { id: 'full-plain', name: 'full backup, plain', anchor: 'full-plain-repozo' },
  { id: 'full-gzip', name: 'full backup, gzip', anchor: 'full-gzip-repozo' },
  { id: 'incremental', name: 'incremental backup after a small commit', anchor: 'incremental-repozo' },
  { id: 'restore', name: 'full restore', anchor: 'restore-repozo' },
  { id: 'verify', name: 'verify (`repozo -V`)', anchor: 'verify-repozo' },
  { id: 'index', name: 'index build', anchor: 'index-zodb' },
  { id: 'check', name: '`check` (live scan and backups)' },
  { id: 'list', name: '`list`' },
  { id: 'full-plain-repozo', name: 'anchor: `repozo -B -F`', isAnchor: true },
  { id: 'full-gzip-repozo', name: 'anchor: `repozo -B -F -z`', isAnchor: true, plot: 'full-gzip' },
  { id: 'incremental-repozo', name: 'anchor: `repozo -B -Q` after a small commit', isAnchor: true },
  { id: 'restore-repozo', name: 'anchor: `repozo -R -o`', isAnchor: true },
  { id: 'verify-repozo', name: 'anchor: `repozo -V`', isAnchor: true },
  { id: 'index-zodb', name: "anchor: ZODB's index build (FileStorage, read-only, no .index)", isAnchor: true },
];
/** The Data.fs cases that need the prepared repository (phase 2 of datafsCurve). */
const PHASE2 = ['incremental', 'verify', 'restore', 'check', 'list', 'incremental-repozo', 'verify-repozo', 'restore-repozo'];
const BLOB_OPS = [
  { id: 'first', name: 'first backup (blob pool)', anchor: 'first-rsync' },
  { id: 'new10-pool', name: 'backup after 10 new blobs, pool', anchor: 'new10-rsync' },
  { id: 'new10-dir', name: 'backup after 10 new blobs, hard-link trees', anchor: 'new10-rsync' },
  { id: 'restore', name: 'full restore (hard links)', anchor: 'restore-rsync' },
  { id: 'check', name: '`check`' },
  { id: 'first-rsync', name: 'anchor: `rsync -a` first copy', isAnchor: true },
  { id: 'new10-rsync', name: 'anchor: `rsync -a --delete --link-dest` (blob part alone)', isAnchor: true, plot: 'new10-pool' },
  { id: 'restore-rsync', name: 'anchor: `rsync -a` of the blobstorage', isAnchor: true },
];

// ---------------------------------------------------------------------------
// Helpers

const cli = (...args) => run(process.execPath, [...S.nodeArgs, CLI, ...args], { capture: true, timed: true });
const rmAll = (p) => run('rm', ['-rf', '--one-file-system', p]);

/** Reads regular files (up to BIG_BYTES) through the page cache; folders and bigger files are left cold. */
async function warm(...paths) {
  for (const p of paths) {
    const st = await fsp.stat(p).catch(() => undefined);
    if (st?.isFile() && st.size <= BIG_BYTES) await run('sh', ['-c', 'cat "$1" > /dev/null', 'sh', p]);
  }
}

async function freeInodes() {
  const r = await run('df', ['--output=iavail', DATA], { capture: true });
  return Number(r.stdout.trim().split('\n').at(-1));
}

/** The trials of `cases`, one round when `big`; returns the best seconds (and CPU) by id. */
async function trialsOf(cases, big, kind = 'blobs') {
  // BENCH_CASES picks Data.fs cases only: some blob cases share their ids ('restore', 'check').
  if (S.only && kind === 'datafs') cases = cases.filter((c) => S.only.has(c.id));
  if (!cases.length) return {};
  const rounds = big ? 1 : S.rounds;
  const trials = await runTrials(cases, { rounds, warmupRounds: big ? 0 : S.warmupRounds, quietWait: S.quietWait, hotMb: S.hotMb, warm });
  const { results } = summarize(cases, trials);
  const got = Object.fromEntries(results.map((r) => [r.id, { seconds: r.seconds, cpuSeconds: r.cpuSeconds, trials: r.trials.length }]));
  // Saved at once (marked partial until the size is done): a run stopped midway keeps what it measured.
  if (current) {
    Object.assign(current.results, got);
    await save(current.kind, current.key, { ...stamp(), rounds, partial: true, results: current.results });
  }
  return got;
}

/** The size being measured: trialsOf saves its figures as they come. */
let current;
const stamp = () => ({ date: new Date().toISOString(), node: process.version, cpus: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}` });

/**
 * Figures read back from the logs of runs (their stderr) that were stopped
 * before they saved them: the best seconds and CPU time of each case the
 * results lack (figures saved are never replaced); the size is marked partial.
 */
async function importLogs(files) {
  for (const f of files) {
    let key;
    const found = {};
    for (const line of (await fsp.readFile(f, 'utf8')).split('\n')) {
      const head = /^(\d+G|\d+): /.exec(line);
      if (head) key = head[1];
      const m = /^round (\d+): (\S+)\s+([\d.]+) s(?:\s+\(cpu ([\d.]+) user \+ ([\d.]+) sys\))?/.exec(line);
      if (!m || !key) continue;
      const r = ((found[key] ??= { rounds: 0, results: {} }).results[m[2]] ??= { seconds: Infinity, trials: 0 });
      found[key].rounds = Math.max(found[key].rounds, Number(m[1]));
      r.trials++;
      if (Number(m[3]) < r.seconds) {
        r.seconds = Number(m[3]);
        r.cpuSeconds = m[4] === undefined ? undefined : +(Number(m[4]) + Number(m[5])).toFixed(2);
      }
    }
    const st = await fsp.stat(f);
    for (const [k, v] of Object.entries(found)) {
      const kind = k.endsWith('G') ? 'datafs' : 'blobs';
      const have = (await loadResults())[kind][k];
      const missing = Object.fromEntries(Object.entries(v.results).filter(([id]) => !have?.results[id]));
      if (!Object.keys(missing).length) continue;
      log(`${k}: ${Object.keys(missing).join(', ')} from ${f}`);
      const entry = have ?? { ...stamp(), date: st.mtime.toISOString(), rounds: v.rounds, results: {} };
      await save(kind, k, { ...entry, partial: true, fromLog: path.basename(f), results: missing });
    }
  }
}

// ---------------------------------------------------------------------------
// A Data.fs

async function datafsCurve(label, repozo) {
  const { bytes, objects } = DATAFS_SIZES[label];
  await ensureDataFs(bytes, objects, label);
  const { file } = dataFsPaths(label);
  const big = bytes > BIG_BYTES;
  const slow = !big || SLOW_ANCHORS;
  const W = path.join(WORK, `datafs-${label}`);
  await rmAll(W);
  await fsp.mkdir(W, { recursive: true });
  const P = (...p) => path.join(W, ...p);
  const genSize = (await fsp.stat(file)).size;
  const py = (...args) => run(repozo.python, ['-m', 'ZODB.scripts.repozo', ...args], { env: repozo.env, timed: true });
  // Data.fs without its .index beside it (a hard link): what an index build starts from.
  await fsp.mkdir(P('noindex'));
  await fsp.link(file, P('noindex', 'Data.fs'));
  const bundle = path.join(ROOT, 'out', 'bench', 'engine-gen.js');
  await engine();
  const indexScript = `const e = require(${JSON.stringify(bundle)}); const fs = require('node:fs');
(async () => { const f = process.argv[1]; const fh = await fs.promises.open(f, 'r'); const end = (await fh.stat()).size;
  const index = await e.rebuildIndex(fh, f, end); await fh.close();
  await e.writeIndexFile(process.argv[2], index, end); })().catch((err) => { console.error(err); process.exit(1); });`;
  const results = {};
  const emptyDir = (d) => async () => {
    await rmAll(d);
    await fsp.mkdir(d, { recursive: true });
  };
  try {
    // Phase 1: full backups and the index build, each output removed after its trial.
    const phase1 = [
      { id: 'full-plain', inputs: [file], setup: emptyDir(P('repo-a')), cmd: () => cli('repozo', '-B', '-F', '-r', P('repo-a'), '-f', file), cleanup: () => rmAll(P('repo-a')) },
      {
        id: 'full-gzip',
        inputs: [file],
        setup: emptyDir(P('repo-a')),
        cmd: () => cli('repozo', '-B', '-F', '-z', '-r', P('repo-a'), '-f', file),
        cleanup: () => rmAll(P('repo-a')),
      },
      {
        id: 'index',
        inputs: [file],
        setup: () => rmAll(P('index.out')),
        cmd: () => run(process.execPath, ['-e', indexScript, P('noindex', 'Data.fs'), P('index.out')], { timed: true }),
        cleanup: () => rmAll(P('index.out')),
      },
    ];
    if (repozo) {
      phase1.push({
        id: 'full-plain-repozo',
        inputs: [file],
        setup: emptyDir(P('repo-b')),
        cmd: () => py('-B', '-F', '-r', P('repo-b'), '-f', file),
        cleanup: () => rmAll(P('repo-b')),
      });
      if (slow) {
        phase1.push({
          id: 'full-gzip-repozo',
          inputs: [file],
          setup: emptyDir(P('repo-b')),
          cmd: () => py('-B', '-F', '-z', '-r', P('repo-b'), '-f', file),
          cleanup: () => rmAll(P('repo-b')),
        });
        phase1.push({
          id: 'index-zodb',
          inputs: [file],
          cmd: () =>
            run(repozo.python, ['-c', 'import sys\nfrom ZODB.FileStorage import FileStorage\nFileStorage(sys.argv[1], read_only=True).close()', P('noindex', 'Data.fs')], {
              env: repozo.env,
              timed: true,
            }),
        });
      }
    }
    log(`${label}: full backups and index build`);
    Object.assign(results, await trialsOf(phase1, big, 'datafs'));

    // Phase 2: a repository whose last piece is an incremental (untimed), then
    // incrementals after small commits, verify, restore, check, list.
    if (S.only && !PHASE2.some((id) => S.only.has(id))) return results;
    log(`${label}: preparing the repository (a full backup and an incremental, untimed)`);
    await fsp.mkdir(P('repo'));
    await run(process.execPath, [CLI, 'repozo', '-B', '-F', '-r', P('repo'), '-f', file]);
    await appendCommit(file);
    await run(process.execPath, [CLI, 'repozo', '-B', '-Q', '-r', P('repo'), '-f', file]);
    const withRepozoInc = repozo && !big; // a second 10 GiB repository would not fit beside the first
    if (withRepozoInc) {
      await fsp.mkdir(P('repo-r'));
      await run(repozo.python, ['-m', 'ZODB.scripts.repozo', '-B', '-F', '-r', P('repo-r'), '-f', file], { env: repozo.env });
    }
    const cfg = P('deployment.json');
    await fsp.writeFile(cfg, JSON.stringify({ datafs: file, location: P('repo'), keep: 0, gzip: false }));
    const phase2 = [
      { id: 'incremental', inputs: [file], setup: () => appendCommit(file), cmd: () => cli('repozo', '-B', '-Q', '-r', P('repo'), '-f', file) },
      { id: 'verify', inputs: [P('repo')], cmd: () => cli('repozo', '-V', '-r', P('repo')) },
      { id: 'restore', inputs: [P('repo')], setup: emptyDir(P('out')), cmd: () => cli('repozo', '-R', '-r', P('repo'), '-o', P('out', 'Data.fs')), cleanup: () => rmAll(P('out')) },
      { id: 'check', inputs: [file], cmd: () => cli('check', '--json', '--dir', W, '--config', cfg) },
      { id: 'list', inputs: [], cmd: () => cli('list', '--json', '--dir', W, '--config', cfg) },
    ];
    if (repozo) {
      if (withRepozoInc) phase2.push({ id: 'incremental-repozo', inputs: [file], setup: () => appendCommit(file), cmd: () => py('-B', '-Q', '-r', P('repo-r'), '-f', file) });
      phase2.push({ id: 'verify-repozo', inputs: [P('repo')], cmd: () => py('-V', '-r', P('repo')) });
      phase2.push({
        id: 'restore-repozo',
        inputs: [P('repo')],
        setup: emptyDir(P('out')),
        cmd: () => py('-R', '-r', P('repo'), '-o', P('out', 'Data.fs')),
        cleanup: () => rmAll(P('out')),
      });
    }
    log(`${label}: incremental, verify, restore, check, list`);
    Object.assign(results, await trialsOf(phase2, big, 'datafs'));
  } finally {
    await truncateTo(file, genSize);
    await rmAll(W);
  }
  return results;
}

// ---------------------------------------------------------------------------
// A blob site

async function blobCurve(n) {
  const site = await ensureBlobSite(n);
  const big = n >= BIG_FILES;
  const W = path.join(WORK, `blobs-${n}`);
  await rmAll(W);
  await fsp.mkdir(W, { recursive: true });
  const P = (...p) => path.join(W, ...p);
  const rand = rng(n + 7);
  // Trial outputs are moved aside and deleted after the last trial: on an
  // ext4 without a journal, creating files right after deleting many runs
  // much slower (see "Deleting" in scripts/bench-deploy.mjs).
  let trashed = 0;
  const discard = async (p) => {
    if (!existsSync(p)) return;
    await fsp.mkdir(P('trash'), { recursive: true });
    await fsp.rename(p, P('trash', String(trashed++)));
  };
  const config = async (name, format, fs, blobs) => {
    const f = P(`${name}.json`);
    await fsp.writeFile(
      f,
      JSON.stringify({ blobFormat: format, keep: 0, datafs: fs, blob_storage: blobs, location: P(format, 'backups'), blobbackuplocation: P(format, 'blobstoragebackups') }),
    );
    return f;
  };
  const pool = await config('pool', 'pool', site.file, site.blobDir);
  const dir = await config('dir', 'dir', site.file, site.blobDir);
  const target = P('target', 'var');
  const restoreCfg = await config('restore', 'pool', path.join(target, 'filestorage', 'Data.fs'), path.join(target, 'blobstorage'));
  const results = {};
  // An rsync generation a trial: the previous one is removed once the next links to it (inodes).
  let gen = 0;
  const rsyncGen = (g) => P('rsync', `gen-${g}`);
  try {
    log(`${n}: first backup`);
    Object.assign(
      results,
      await trialsOf(
        [
          { id: 'first', inputs: [], setup: () => discard(P('pool')), cmd: () => cli('backup', '-q', '--dir', site.dir, '--config', pool) },
          {
            id: 'first-rsync',
            inputs: [],
            setup: async () => {
              await discard(P('rsync'));
              await fsp.mkdir(P('rsync'));
            },
            cmd: () => run('rsync', ['-a', `${site.blobDir}/`, `${rsyncGen(0)}/`], { timed: true }),
          },
        ],
        big,
      ),
    );
    const inodes = await freeInodes();
    const withDir = !big || inodes > 4 * n + 2_000_000;
    if (!withDir) log(`${n}: hard-link trees left out: ${inodes.toLocaleString('en')} inodes free`);
    if (withDir) {
      log(`${n}: first hard-link tree (untimed)`);
      await run(process.execPath, [CLI, 'backup', '-q', '--dir', site.dir, '--config', dir]);
    }
    const newCases = [
      { id: 'new10-pool', inputs: [], setup: () => addBlobs(site, rand), cmd: () => cli('backup', '-q', '--dir', site.dir, '--config', pool) },
      {
        id: 'new10-rsync',
        inputs: [],
        cmd: async () => {
          const r = await run('rsync', ['-a', '--delete', `--link-dest=${rsyncGen(gen)}`, `${site.blobDir}/`, `${rsyncGen(gen + 1)}/`], { timed: true });
          await discard(rsyncGen(gen++));
          return r;
        },
      },
    ];
    if (withDir) newCases.push({ id: 'new10-dir', inputs: [], cmd: () => cli('backup', '-q', '--dir', site.dir, '--config', dir) });
    // The 10 new files are committed before the round's first trial, so every contender's backup finds exactly those 10.
    log(`${n}: backups after 10 new blob files`);
    Object.assign(results, await trialsOf(newCases, big));
    await rmAll(P('dir'));
    await rmAll(P('rsync'));
    await rmAll(P('trash'));
    const emptyTarget = async () => {
      await discard(P('target'));
      await fsp.mkdir(path.join(target, 'filestorage'), { recursive: true });
    };
    log(`${n}: restore and check`);
    Object.assign(
      results,
      await trialsOf(
        [
          {
            id: 'restore',
            inputs: [],
            setup: emptyTarget,
            cmd: () => cli('restore', '--yes', '--discard-old', '--dir', P('target'), '--config', restoreCfg),
            cleanup: () => discard(P('target')),
          },
          {
            id: 'restore-rsync',
            inputs: [],
            setup: emptyTarget,
            cmd: () => run('rsync', ['-a', `${site.blobDir}/`, `${path.join(target, 'blobstorage')}/`], { timed: true }),
            cleanup: () => discard(P('target')),
          },
          { id: 'check', inputs: [], cmd: () => cli('check', '--json', '--dir', site.dir, '--config', pool) },
        ],
        big,
      ),
    );
  } finally {
    await rmAll(W);
  }
  return results;
}

// ---------------------------------------------------------------------------
// Results: merged by size, printed, drawn

async function loadResults() {
  try {
    return JSON.parse(await fsp.readFile(RESULTS, 'utf8'));
  } catch {
    return { datafs: {}, blobs: {} };
  }
}

const fmt = (s) => (s === undefined ? '' : s >= 100 ? s.toFixed(0) : s >= 10 ? s.toFixed(1) : s >= 1 ? s.toFixed(2) : s.toFixed(3));
const sizeName = (kind, key) => (kind === 'datafs' ? `${parseFloat(key)} ${key.endsWith('G') ? 'GiB' : 'MiB'}` : `${Number(key).toLocaleString('en')} files`);
const sizeKeys = (kind, saved) => Object.keys(saved[kind]).sort((a, b) => (kind === 'datafs' ? parseFloat(a) - parseFloat(b) : Number(a) - Number(b)));

/** One Markdown table a kind: seconds at each size, growth largest/smallest, × anchor at each size. */
function table(kind, saved) {
  const ops = kind === 'datafs' ? DATAFS_OPS : BLOB_OPS;
  const keys = sizeKeys(kind, saved);
  if (!keys.length) return '';
  const first = keys[0];
  const last = keys.at(-1);
  const head = ['operation', ...keys.map((k) => `${sizeName(kind, k)}: s (CPU s)`)];
  if (keys.length > 1) head.push(`${sizeName(kind, last)} / ${sizeName(kind, first)}`);
  head.push(...keys.map((k) => `× anchor at ${sizeName(kind, k)}`));
  const rows = [];
  for (const op of ops) {
    const secs = keys.map((k) => saved[kind][k].results[op.id]?.seconds);
    if (secs.every((s) => s === undefined)) continue;
    const cpus = keys.map((k) => saved[kind][k].results[op.id]?.cpuSeconds);
    const row = [op.name, ...secs.map((x, i) => (x === undefined ? '' : cpus[i] === undefined ? fmt(x) : `${fmt(x)} (${fmt(cpus[i])})`))];
    if (keys.length > 1) {
      const cpuGrowth = cpus[0] && cpus.at(-1) ? ` (${(cpus.at(-1) / cpus[0]).toFixed(1)} ×)` : '';
      row.push(secs[0] && secs.at(-1) ? `${(secs.at(-1) / secs[0]).toFixed(1)} ×${cpuGrowth}` : '');
    }
    row.push(
      ...keys.map((k) => {
        const a = op.anchor && saved[kind][k].results[op.anchor]?.seconds;
        const s = saved[kind][k].results[op.id]?.seconds;
        return a && s ? (s / a).toFixed(2) : '';
      }),
    );
    rows.push(row);
  }
  const trials = keys
    .map((k) => {
      const e = saved[kind][k];
      const partial = e.partial ? `, stopped before the end${e.fromLog ? ', figures read back from its log' : ''}` : '';
      return `${sizeName(kind, k)}: ${e.rounds === 1 ? '1 trial' : `best of ${e.rounds}`} (${e.date.slice(0, 16)}Z${partial})`;
    })
    .join('; ');
  return [
    `| ${head.join(' | ')} |`,
    `| --- | ${head
      .slice(1)
      .map(() => '---:')
      .join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
    trials,
  ].join('\n');
}

// --- The SVG: two log-log panels, one line per operation, labels at the line ends.

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/`/g, '');

function panel(kind, saved, x0, y0, w, h, title) {
  // Every operation, and the anchors marked `plot` (dashed, in the colour of the operation they anchor).
  const all0 = kind === 'datafs' ? DATAFS_OPS : BLOB_OPS;
  const mine = all0.filter((o) => !o.isAnchor);
  const ops = [...mine, ...all0.filter((o) => o.plot)];
  const colorOf = (op) => COLORS[mine.indexOf(op.plot ? mine.find((m) => m.id === op.plot) : op) % COLORS.length];
  const keys = sizeKeys(kind, saved);
  const xs = keys.map((k) => (kind === 'datafs' ? DATAFS_SIZES[k]?.bytes / GIB : Number(k)));
  const out = [`<text x="${x0 + w / 2}" y="${y0 - 14}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`];
  const all = [];
  for (const op of ops) for (const k of keys) if (saved[kind][k].results[op.id]) all.push(saved[kind][k].results[op.id].seconds);
  if (!all.length || !keys.length) return out.join('\n');
  const ly0 = Math.floor(Math.log10(Math.min(...all)));
  const ly1 = Math.ceil(Math.log10(Math.max(...all)));
  const lx = xs.map(Math.log10);
  const lx0 = Math.min(...lx) - 0.15;
  const lx1 = Math.max(...lx) + 0.15;
  const X = (v) => x0 + ((Math.log10(v) - lx0) / (lx1 - lx0 || 1)) * w;
  const Y = (s) => y0 + h - ((Math.log10(s) - ly0) / (ly1 - ly0 || 1)) * h;
  out.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#888"/>`);
  for (let e = ly0; e <= ly1; e++) {
    for (const m of e < ly1 ? [1, 2, 5] : [1]) {
      const s = m * 10 ** e;
      out.push(`<line x1="${x0}" x2="${x0 + w}" y1="${Y(s)}" y2="${Y(s)}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
      out.push(`<text x="${x0 - 6}" y="${Y(s) + 4}" text-anchor="end" fill="${m === 1 ? '#000' : '#888'}">${s >= 1 ? s : s.toFixed(-e)} s</text>`);
    }
  }
  xs.forEach((v, i) => {
    out.push(`<line x1="${X(v)}" x2="${X(v)}" y1="${y0}" y2="${y0 + h}" stroke="#ddd"/>`);
    out.push(`<text x="${X(v)}" y="${y0 + h + 16}" text-anchor="middle">${esc(sizeName(kind, keys[i]))}</text>`);
  });
  // A dotted line for time proportional to size, from the bottom left, for the eye.
  if (xs.length > 1) {
    const lin0 = 10 ** ly0;
    const xEnd = Math.min(xs.at(-1), xs[0] * 10 ** (ly1 - ly0));
    const xm = Math.sqrt(xs[0] * xEnd);
    out.push(`<line x1="${X(xs[0])}" y1="${Y(lin0)}" x2="${X(xEnd)}" y2="${Y(lin0 * (xEnd / xs[0]))}" stroke="#999" stroke-dasharray="2 4"/>`);
    out.push(`<text x="${X(xm) + 6}" y="${Y(lin0 * (xm / xs[0])) + 12}" fill="#999">∝ size</text>`);
  }
  const labels = [];
  ops.forEach((op) => {
    const pts = keys.map((k, j) => [xs[j], saved[kind][k].results[op.id]?.seconds]).filter((p) => p[1] !== undefined);
    if (!pts.length) return;
    const c = colorOf(op);
    const dash = op.isAnchor ? ' stroke-dasharray="6 4"' : '';
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2"${dash} points="${pts.map(([x, s]) => `${X(x).toFixed(1)},${Y(s).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, s] of pts) out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(s).toFixed(1)}" r="3" fill="${c}"><title>${esc(op.name)}: ${fmt(s)} s</title></circle>`);
    const [lxv, ls] = pts.at(-1);
    labels.push({ y: Y(ls), py: Y(ls), px: X(lxv), text: `${op.name} (${fmt(ls)} s${pts.length < xs.length ? `, at ${sizeName(kind, keys[xs.indexOf(lxv)])}` : ''})`, c });
  });
  // Labels at the right ends, pushed apart so they do not overlap.
  labels.sort((a, b) => a.y - b.y);
  for (let i = 1; i < labels.length; i++) if (labels[i].y < labels[i - 1].y + 13) labels[i].y = labels[i - 1].y + 13;
  // Labels right of the panel, each joined to its line's last point by a thin leader.
  for (const l of labels) {
    out.push(`<polyline fill="none" stroke="${l.c}" stroke-width="0.6" stroke-dasharray="1 2" points="${l.px.toFixed(1)},${l.py.toFixed(1)} ${x0 + w + 4},${l.y.toFixed(1)}"/>`);
    out.push(`<text x="${x0 + w + 8}" y="${(l.y + 4).toFixed(1)}" fill="${l.c}">${esc(l.text)}</text>`);
  }
  return out.join('\n');
}

function svg(saved) {
  const W = 1400;
  const H = 440;
  const body = [
    panel('datafs', saved, 70, 50, 200, 330, 'Data.fs: seconds against size'),
    panel('blobs', saved, 720, 50, 200, 330, 'Blob files: seconds against their number'),
    `<text x="${W / 2}" y="${H - 12}" text-anchor="middle" fill="#555">log-log; dashed: an anchor (the real repozo, rsync); ${esc(saved.cpus ?? '')}, shared with other work during the run; the tables have every figure</text>`,
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">
<rect width="${W}" height="${H}" fill="white"/>
${body.join('\n')}
</svg>
`;
}

// ---------------------------------------------------------------------------
// Main

if (MODE === 'off') {
  log('BENCH_CURVES=off: the scaling curves are skipped');
  process.exit(0);
}
/** Saves one size's figures: merged into the file as it is now (another run may have added its own meanwhile). */
async function save(kind, key, entry) {
  const now = await loadResults();
  // Cases this run did not measure (BENCH_CASES, a stopped run) keep their earlier figures.
  now[kind][key] = { ...entry, results: { ...now[kind][key]?.results, ...entry.results } };
  now.cpus = entry.cpus;
  await fsp.writeFile(`${RESULTS}.tmp`, JSON.stringify(now, null, 2) + '\n');
  await fsp.rename(`${RESULTS}.tmp`, RESULTS);
}

if (process.env.BENCH_CURVES_FROM_LOGS) await importLogs(process.env.BENCH_CURVES_FROM_LOGS.split(','));
else if (!process.env.BENCH_CURVES_SVG_ONLY) {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm run bench does).`);
  const repozo = DATAFS.length ? await findRealRepozo() : undefined;
  for (const label of DATAFS) {
    if (!DATAFS_SIZES[label]) throw new Error(`BENCH_CURVES_DATAFS: unknown size ${label} (${Object.keys(DATAFS_SIZES).join(', ')})`);
    current = { kind: 'datafs', key: label, results: {} };
    const results = await datafsCurve(label, repozo);
    await save('datafs', label, { ...stamp(), rounds: DATAFS_SIZES[label].bytes > BIG_BYTES ? 1 : S.rounds, results });
  }
  for (const n of BLOBS) {
    current = { kind: 'blobs', key: n, results: {} };
    const results = await blobCurve(n);
    await save('blobs', n, { ...stamp(), rounds: n >= BIG_FILES ? 1 : S.rounds, results });
  }
}
const saved = await loadResults();
await fsp.writeFile(SVG, svg(saved));
log(`wrote ${path.relative(ROOT, SVG)}`);
console.log(['## Data.fs', '', table('datafs', saved), '', '## Blob files', '', table('blobs', saved)].join('\n'));
