#!/usr/bin/env node
// Off-site (issue 12): plone-backup against `rclone sync` (Debian's rclone) of
// the same backup folders (var/backups and var/blobstoragebackups) to the same
// S3 server, a real Ceph RGW started for the run (../shared/s3/start-s3.sh),
// on a site of 20,000 small blob files (bench-data/scale-20000, made by
// scripts/bench-gen.mjs and shared with bench-blobscale; reused read-only: the benchmark works on a copy
// whose Data.fs is copied and whose blob files are hard links).
//
//   npm run build && node scripts/bench-remote.mjs
//   BENCH_REMOTE_SITE=/path/to/scale-20000 BENCH_ROUNDS=3 node scripts/bench-remote.mjs
//
// Cases, every one a child process timed from spawn to exit, round-robin:
//   first push      into a bucket holding nothing (a fresh bucket per trial);
//   after 10 blobs  10 blob files committed and backed up (untimed), then the
//                   push or the sync of the folders into the first push's
//                   bucket (each contender's bucket first brought up to date,
//                   untimed, so each sends exactly one new backup);
//   restore         into a folder holding nothing (both buckets first brought
//                   up to date, untimed): `plone-backup restore --from`,
//                   against `rclone copy` of the folders then a local
//                   `plone-backup restore` of what it copied.
// rclone runs with `--fast-list --checksum` (one listing, MD5s compared with
// the listing's ETags: no request per object to read modification times),
// its fastest for this; its default --transfers 4 / --checkers 8.
//
// Targets: first push ≤ 1.0 × rclone; after 10 new blobs ≤ 0.2 × rclone;
// restore ≤ 1.0 × rclone copy + local restore.
//
// Defaults (few minutes): BENCH_ROUNDS=1, BENCH_WARMUP_ROUNDS=0, BENCH_HOT_MB=0,
// BENCH_QUIET_WAIT=20 (the knobs of scripts/bench-lib.mjs's settings).

import { execFileSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import { DATA, addBlobs, ensureBlobSite } from './bench-gen.mjs';
import { ROOT, aboutRun, log, printReport, rng, run, runTrials, settings, summarize, writeResults } from './bench-lib.mjs';

const s = settings({ BENCH_ROUNDS: '1', BENCH_WARMUP_ROUNDS: '0', BENCH_HOT_MB: '0', BENCH_QUIET_WAIT: '20', ...process.env });
const CLI = s.cli;
if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first.`);
const WORK = path.join(DATA, 'remote');
const N = 20_000;
const SCRIPT = process.env.START_S3 || path.resolve(ROOT, '..', 'shared', 's3', 'start-s3.sh');
const RCLONE = process.env.RCLONE || 'rclone';
try {
  execFileSync(RCLONE, ['version'], { stdio: 'ignore' });
} catch {
  throw new Error('rclone is missing: apt-get install -y rclone (Debian), or set RCLONE.');
}

// ---------------------------------------------------------------------------
// The site: a copy of the 20,000-blob site (scripts/bench-gen.mjs makes it when missing)

/** The 20,000-file site: BENCH_REMOTE_SITE, or scripts/bench-gen.mjs's (made once, shared with the other benchmarks). */
async function sourceSite() {
  const given = process.env.BENCH_REMOTE_SITE;
  if (given && existsSync(path.join(given, 'ready'))) return given;
  return (await ensureBlobSite(N)).dir;
}

const src = await sourceSite();
await fsp.rm(WORK, { recursive: true, force: true });
const site = path.join(WORK, 'site');
await fsp.mkdir(path.join(site, 'var', 'filestorage'), { recursive: true });
await fsp.copyFile(path.join(src, 'var', 'filestorage', 'Data.fs'), path.join(site, 'var', 'filestorage', 'Data.fs'));
// Blob files are never changed: hard links leave the source as it is.
execFileSync('cp', ['-al', path.join(src, 'var', 'blobstorage'), path.join(site, 'var', 'blobstorage')]);
const file = path.join(site, 'var', 'filestorage', 'Data.fs');
const blobDir = path.join(site, 'var', 'blobstorage');
log(`the site: a copy of ${src}; its first backup (untimed)`);
await run(process.execPath, [CLI, 'backup', '-q', '--dir', site]);

// ---------------------------------------------------------------------------
// The server

// The one way the tests start a server (test/support/s3.ts), bundled for this script.
await build({
  entryPoints: [path.join(ROOT, 'test', 'support', 's3.ts')],
  outfile: path.join(ROOT, 'out', 'bench', 's3.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  logLevel: 'warning',
});
process.env.START_S3 = SCRIPT; // its own default is relative to where it compiles to, not to out/bench
const server = await createRequire(import.meta.url)(path.join(ROOT, 'out', 'bench', 's3.js')).startS3();
log(`Ceph RGW started at ${server.env.endpoint}`);
let destroyed = false;
const destroy = async () => {
  if (!destroyed) await server.destroy();
  destroyed = true;
};
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => void destroy().finally(() => process.exit(130)));
const S3 = { S3_ENDPOINT: server.env.endpoint, S3_ACCESS_KEY: server.env.accessKey, S3_SECRET_KEY: server.env.secretKey, S3_REGION: server.env.region };

const env = {
  AWS_ACCESS_KEY_ID: S3.S3_ACCESS_KEY,
  AWS_SECRET_ACCESS_KEY: S3.S3_SECRET_KEY,
  AWS_REGION: S3.S3_REGION,
  AWS_ENDPOINT_URL_S3: S3.S3_ENDPOINT,
  RCLONE_CONFIG_BENCH_TYPE: 's3',
  RCLONE_CONFIG_BENCH_PROVIDER: 'Ceph',
  RCLONE_CONFIG_BENCH_ENDPOINT: S3.S3_ENDPOINT,
  RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: S3.S3_ACCESS_KEY,
  RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: S3.S3_SECRET_KEY,
  RCLONE_CONFIG_BENCH_REGION: S3.S3_REGION,
  RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
  // rclone's AWS SDK cannot use a custom CA bundle with its own transport (and the server is plain http).
  AWS_CA_BUNDLE: '',
};
let bucketNo = 0;
async function newBucket(tag) {
  const b = `bench-${tag}-${++bucketNo}`;
  await run(RCLONE, ['mkdir', `bench:${b}`], { env });
  return b;
}
const RCLONE_FLAGS = ['--fast-list', '--checksum'];
const FOLDERS = ['--include', '/backups/**', '--include', '/blobstoragebackups/**'];
const rcloneSync = (bucket, o = {}) => run(RCLONE, ['sync', ...RCLONE_FLAGS, ...FOLDERS, path.join(site, 'var'), `bench:${bucket}/site`], { env, ...o });
const push = (bucket, o = {}) => run(process.execPath, [CLI, 'push', '-q', '--dir', site, '--to', `s3://${bucket}/site`], { env, ...o });

/** Commits 10 blob files to the site and backs it up (untimed). */
const rand = rng(N + 12);
async function tenNewBlobs() {
  await addBlobs({ file, blobDir }, rand, 10);
  await run(process.execPath, [CLI, 'backup', '-q', '--dir', site]);
}

/** Both runs of a restore case, as one trial: seconds and CPU summed. */
async function both(a, b) {
  const x = await a();
  const y = await b();
  return { seconds: x.seconds + y.seconds, cpu: x.cpu && y.cpu ? { user: x.cpu.user + y.cpu.user, sys: x.cpu.sys + y.cpu.sys } : undefined };
}

const firstBucket = {};
const restoreDir = path.join(WORK, 'restored');
const restoreArgs = (dir) => [
  'restore',
  '-q',
  '--yes',
  '--dir',
  dir,
  '--file',
  path.join(dir, 'var', 'filestorage', 'Data.fs'),
  '--blob-dir',
  path.join(dir, 'var', 'blobstorage'),
];
let firstState;

const cases = [
  {
    id: 'rclone-first',
    name: '`rclone sync` of the backup folders, into an empty bucket',
    inputs: [],
    setup: async () => (firstBucket.rclone = await newBucket('rclone-first')),
    cmd: () => rcloneSync(firstBucket.rclone, { timed: true }),
  },
  {
    id: 'push-first',
    name: '`plone-backup push`, into an empty bucket',
    inputs: [],
    setup: async () => {
      firstBucket.push = await newBucket('push-first');
      firstState ??= (await fsp.readdir(path.join(site, 'var', 'backups'))).length;
    },
    cmd: () => push(firstBucket.push, { timed: true }),
    target: { of: 'rclone-first', max: 1.0 },
  },
  {
    id: 'rclone-10',
    name: '`rclone sync` after 10 new blob files',
    inputs: [],
    setup: async () => {
      // The first push's bucket, brought up to date (untimed): it then lacks exactly the next backup.
      await rcloneSync(firstBucket.rclone);
      await tenNewBlobs();
    },
    cmd: () => rcloneSync(firstBucket.rclone, { timed: true }),
  },
  {
    id: 'push-10',
    name: '`plone-backup push` after 10 new blob files',
    inputs: [],
    setup: async () => {
      await push(firstBucket.push);
      await tenNewBlobs();
    },
    cmd: () => push(firstBucket.push, { timed: true }),
    target: { of: 'rclone-10', max: 0.2 },
  },
  {
    id: 'rclone-restore',
    name: '`rclone copy` of the folders, then `plone-backup restore`, into an empty folder',
    inputs: [],
    setup: async () => {
      // Both buckets hold the same state: every backup so far (untimed).
      await rcloneSync(firstBucket.rclone);
      await push(firstBucket.push);
      await fsp.rm(restoreDir, { recursive: true, force: true });
      await fsp.mkdir(restoreDir, { recursive: true });
    },
    cmd: () =>
      both(
        () => run(RCLONE, ['copy', ...RCLONE_FLAGS, `bench:${firstBucket.rclone}/site`, path.join(restoreDir, 'var')], { env, timed: true }),
        () => run(process.execPath, [CLI, ...restoreArgs(restoreDir)], { env, timed: true }),
      ),
    check: () => sameState(restoreDir, true),
  },
  {
    id: 'push-restore',
    name: '`plone-backup restore --from`, into an empty folder',
    inputs: [],
    setup: async () => {
      await fsp.rm(restoreDir, { recursive: true, force: true });
      await fsp.mkdir(restoreDir, { recursive: true });
    },
    cmd: () => run(process.execPath, [CLI, ...restoreArgs(restoreDir), '--from', `s3://${firstBucket.push}/site`], { env, timed: true }),
    check: () => sameState(restoreDir, false),
    target: { of: 'rclone-restore', max: 1.0 },
  },
];

/** Both contenders of a round restore the same state: a Data.fs of the same size (the first one of the round sets it). */
let roundSize;
async function sameState(dir, first) {
  const st = await fsp.stat(path.join(dir, 'var', 'filestorage', 'Data.fs')).catch(() => undefined);
  if (!st) return 'no Data.fs restored';
  if (first) roundSize = st.size;
  return st.size === roundSize ? true : `restored ${st.size} bytes, the other contender ${roundSize}`;
}

const loadBefore = os.loadavg();
let trials;
try {
  trials = await runTrials(cases, { ...s, warm: async () => undefined });
} finally {
  await destroy();
}
const { results } = summarize(cases, trials);
printReport({
  about: `${N.toLocaleString('en')} blob files (0.5-1.5 KB) and their Data.fs, backed up in the blob pool; Ceph RGW 16 on 127.0.0.1; rclone ${execFileSync(RCLONE, ['version'], {
    encoding: 'utf8',
  })
    .split('\n')[0]
    .replace(/^rclone /, '')} ${RCLONE_FLAGS.join(' ')}; ${aboutRun(s)}`,
  columns: [
    ['seconds', true, (r) => r.seconds.toFixed(3)],
    ['cpu s', true, (r) => (r.cpuSeconds === undefined ? '' : r.cpuSeconds.toFixed(2))],
    ['× rclone', true, (r) => (r.ratio === undefined ? '' : r.ratio.toFixed(2))],
  ],
  results,
  notes: [
    `Backups in the folders at the first push: ${firstState} files.`,
    `Load average (1, 5, 15 min) at the start ${loadBefore.map((x) => x.toFixed(2)).join(', ')}, at the end ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(', ')} (${os.cpus().length} CPUs).`,
  ],
});
await writeResults(path.join(DATA, 'results-remote.json'), s, { blobFiles: N, results, loadavg: { start: loadBefore, end: os.loadavg() } });
