#!/usr/bin/env node
// Blob backups against the size of the site (issue 11, goal 2): a backup after
// 10 new blob files, on sites of 20,000 and 200,000 small blob files, with our
// blob pool (the default of our own deployments), with hard-link trees (the
// recipe's layout, which a buildout gets), and the recipe's own method for the
// blob part, `rsync -a --delete --link-dest=PREV blobstorage/ NEW/`.
//
//   npm run build && node scripts/bench-blobscale.mjs
//   BENCH_SCALE_BLOBS=20000,200000,1000000 node scripts/bench-blobscale.mjs
//
// Sites are generated once (Data.fs with 1,000 blob records per transaction,
// blob files of 0.5-1.5 KB; scripts/bench-gen.mjs) and cached in bench-data/scale-N/. Each contender
// has its own backup folder, made (untimed) by a first backup; then, per
// trial, 10 blob files are committed to the live site (untimed) and the
// contender's backup is timed as a child process, best of BENCH_ROUNDS
// (default 3), after a wait for quiet CPUs and `sync`, as in the other
// benchmarks. The `backup` rows are the whole CLI command (Data.fs incremental
// included); the rsync row is the blob part alone, so it flatters rsync.
//
// Targets: pool at 200,000 ≤ 1.5 × pool at 20,000; pool ≤ 1 × rsync at each size.

import { ROOT, log, printReport, run, runTrials, settings, summarize } from './bench-lib.mjs';
import { DATA, addBlobs, ensureBlobSite } from './bench-gen.mjs';
import { rng } from './bench-lib.mjs';
import { promises as fsp, existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const CLI = path.join(ROOT, 'dist', 'cli.js');
const SIZES = (process.env.BENCH_SCALE_BLOBS ?? '20000,200000').split(',').map(Number);
const S = settings({ BENCH_QUIET_WAIT: '30', BENCH_HOT_MB: '0', ...process.env });
const NEW = 10;
if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first.`);

const results = [];
const rowsBySize = {};
for (const n of SIZES) {
  const site = await ensureBlobSite(n);
  const rand = rng(n + 1);
  const out = path.join(DATA, `scale-${n}-run`);
  await fsp.rm(out, { recursive: true, force: true });
  await fsp.mkdir(out, { recursive: true });
  const contenders = [];
  for (const format of ['pool', 'dir']) {
    const cfg = path.join(out, `${format}.json`);
    await fsp.writeFile(
      cfg,
      JSON.stringify({
        blobFormat: format,
        keep: 0,
        datafs: site.file,
        blob_storage: site.blobDir,
        location: path.join(out, format, 'backups'),
        blobbackuplocation: path.join(out, format, 'blobstoragebackups'),
      }),
    );
    const args = [CLI, 'backup', '-q', '--dir', site.dir, '--config', cfg];
    log(`${n}: first ${format} backup (untimed)`);
    await run(process.execPath, args);
    contenders.push({
      inputs: [],
      id: `backup-${format}`,
      name: format === 'pool' ? '`plone-backup backup`, blob pool (our default)' : "`plone-backup backup`, hard-link trees (a buildout's recipe layout)",
      cmd: () => run(process.execPath, args, { timed: true }),
    });
  }
  // The recipe's method: rsync into a new folder, hard-linking what the previous copy has.
  const rsyncDir = path.join(out, 'rsync');
  let prev = path.join(rsyncDir, 'gen-0');
  await fsp.mkdir(rsyncDir, { recursive: true });
  log(`${n}: rsync's first copy (untimed)`);
  await run('rsync', ['-a', `${site.blobDir}/`, `${prev}/`]);
  let gen = 0;
  contenders.push({
    inputs: [],
    id: 'rsync',
    name: "`rsync -a --delete --link-dest=PREV` (the recipe's blob part alone)",
    cmd: async () => {
      const next = path.join(rsyncDir, `gen-${++gen}`);
      const r = await run('rsync', ['-a', '--delete', `--link-dest=${prev}`, `${site.blobDir}/`, `${next}/`], { timed: true });
      prev = next;
      return r;
    },
  });
  // Before each round (untimed): NEW blob files committed to the live site, so
  // every contender's backup finds exactly those (they used to be added before
  // every contender's trial, so each backup found NEW × the contenders).
  contenders[0].setup = () => addBlobs(site, rand, NEW);
  const { best } = summarize(contenders, await runTrials(contenders, { ...S, warm: async () => undefined }));
  for (const c of contenders) log(`${n}: ${c.id} best ${best[c.id].toFixed(3)} s`);
  rowsBySize[n] = best;
  for (const c of contenders) results.push({ name: `${c.name}, ${n.toLocaleString('en')} files`, n, id: c.id, seconds: best[c.id], vsRsync: best[c.id] / best.rsync, trials: [] });
}

const small = SIZES[0];
for (const r of results) {
  if (r.id === 'backup-pool') {
    if (r.n !== small) {
      r.growth = r.seconds / rowsBySize[small]['backup-pool'];
      r.target = `≤ 1.5 × at ${small.toLocaleString('en')}; ≤ 1 × rsync`;
      r.met = r.growth <= 1.5 && r.vsRsync <= 1;
    } else {
      r.target = '≤ 1 × rsync';
      r.met = r.vsRsync <= 1;
    }
  }
}
printReport({
  about: `A backup after ${NEW} new blob files, best of ${S.rounds}; node ${process.version}; ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}`,
  columns: [
    ['seconds', true, (r) => r.seconds.toFixed(3)],
    ['× rsync', true, (r) => (r.id === 'rsync' ? '' : r.vsRsync.toFixed(2))],
    [`× itself at ${small.toLocaleString('en')}`, true, (r) => (r.n === small ? '' : (r.seconds / rowsBySize[small][r.id]).toFixed(2))],
  ],
  results,
});
await fsp.writeFile(path.join(DATA, 'results-blobscale.json'), JSON.stringify({ date: new Date().toISOString(), node: process.version, sizes: SIZES, results }, null, 2) + '\n');
