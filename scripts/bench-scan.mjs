// Issue 11, goal 3: restore and check scale too. Three measurements, each
// against a baseline measured in the same run (the machine is shared):
//
//   1. The index of a big Data.fs (the 10 GiB / 10 million objects file of
//      bench-gen when it is there, else its 1 GiB / 1 million objects one)
//      built and written (the scan a backup does when it has no usable .index,
//      then the fsIndex pickle to disk) against a plain sequential read of the
//      same file, each in a child process of its own so its peak RSS is its
//      own. Target: ≤ 1.2 × the read, in bounded memory.
//   2. The live scan `check` does: from the start, then, after 16 MB were
//      appended, continued from the cache file (in process, once: it is a
//      check that only the appended bytes are read, with the times beside it).
//   3. `plone-backup list` on a deployment whose repository has 500 pieces,
//      from its piece cache, against node's start alone. Target: under a
//      second (node's start included).
//
//   node scripts/bench-scan.mjs                 (part of npm run bench)
//   BENCH_SCAN_SIZE=1G node scripts/bench-scan.mjs   (a size of bench-gen's DATAFS_SIZES)
//   BENCH_SCAN_FILE=/path/Data.fs                    (any FileStorage, only read)
//   BENCH_SCAN_PARTS=index,live,list  BENCH_SCAN_MAP=1 (the index into a JS Map too, for comparison)
//
// The index is measured as a backup builds it (two threads, indexscan.ts) and,
// for comparison, on one thread (the split turned off).
//
// The trials are bench-lib's (runTrials: round robin, a wait for quiet CPUs,
// BENCH_ROUNDS best-of; with a file over 4 GiB one round and no warm-up unless
// BENCH_ROUNDS says otherwise). Data comes from bench-gen (bench-data/gen/,
// git-ignored; BENCH_DATA=DIR for another folder). Results in
// out/bench/results-scan.json. A benchmark reports; it does not gate.

import { promises as fsp, existsSync, readdirSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, loadEngine, log, rng, run, settings, runTrials, summarize, printReport, aboutRun, writeResults } from './bench-lib.mjs';
import { DATA as BENCH_DATA, DATAFS_SIZES, dataFsPaths, ensureDataFs } from './bench-gen.mjs';

const SELF = fileURLToPath(import.meta.url);
const DATA = path.join(BENCH_DATA, 'scan');
const OUT = path.join(ROOT, 'out', 'bench');
const ENGINE = path.join(OUT, 'engine-scan.js');
const PARTS = (process.env.BENCH_SCAN_PARTS ?? 'index,live,list').split(',');

// ---------------------------------------------------------------------------
// Child mode: one measured operation in a fresh process (the contender that
// runTrials times); prints what it did as JSON.

if (process.argv[2] === '--child') {
  const [, , , what, file, out] = process.argv;
  const engine = (await import('node:module')).createRequire(import.meta.url)(ENGINE);
  let extra = {};
  if (what === 'read') {
    // A plain sequential read, in the scanner's chunk size, nothing done with the bytes.
    const fh = await fsp.open(file, 'r');
    const buf = Buffer.allocUnsafe(engine.DEFAULT_CHUNK);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (!bytesRead) break;
      pos += bytesRead;
    }
    await fh.close();
    extra = { bytes: pos };
  } else if (what === 'index') {
    // What a backup does without a usable .index: the lean scan into FsIndex, then the file.
    const st = await engine.openFileStorage(file);
    try {
      const index = await engine.rebuildIndex(st.fh, file, st.size);
      await engine.writeIndexFile(out, index, st.size);
      extra = { objects: index.size, indexBytes: statSync(out).size };
    } finally {
      await st.fh.close();
    }
  } else if (what === 'index-one') {
    // The same on one thread (indexscan.ts's split turned off): the index before the two-core scan.
    const st = await engine.openFileStorage(file);
    try {
      const index = new engine.FsIndex();
      await engine.scanIndex(st, 4, st.size, index.map, { splitMin: Infinity });
      await engine.writeIndexFile(out, index, st.size);
      extra = { objects: index.size, indexBytes: statSync(out).size };
    } finally {
      await st.fh.close();
    }
  } else if (what === 'map') {
    // For comparison only: the same scan into one JS Map entry per oid (the index before issue 11).
    const st = await engine.openFileStorage(file);
    const map = new Map();
    try {
      await engine.scanRange(st, 4, st.size, { noBlobCheck: true, onRecord: (k, pos) => map.set(k, pos) });
      extra = { objects: map.size };
    } finally {
      await st.fh.close();
    }
  }
  process.stdout.write(JSON.stringify({ maxRssMB: process.resourceUsage().maxRSS / 1024, ...extra }));
  process.exit(0);
}

// ---------------------------------------------------------------------------
// Setup

const S = settings();
const fmt = (x, d = 2) => x.toFixed(d);
await fsp.mkdir(OUT, { recursive: true });
await fsp.mkdir(DATA, { recursive: true });
const engine = await loadEngine(ENGINE);

/** A bench-gen Data.fs of `label` (made once). */
async function generated(label) {
  const size = DATAFS_SIZES[label];
  if (!size) throw new Error(`BENCH_SCAN_SIZE=${label}: one of ${Object.keys(DATAFS_SIZES).join(', ')}`);
  return (await ensureDataFs(size.bytes, size.objects, label)).file;
}

/** The file the index is measured on: BENCH_SCAN_FILE, BENCH_SCAN_SIZE, or bench-gen's 10 GiB file when it is made, else its 1 GiB one. */
async function bigDataFs() {
  if (process.env.BENCH_SCAN_FILE) return { file: path.resolve(process.env.BENCH_SCAN_FILE), source: 'BENCH_SCAN_FILE' };
  const label = process.env.BENCH_SCAN_SIZE ?? (existsSync(dataFsPaths('10G').done) ? '10G' : '1G');
  return { file: await generated(label), source: `bench-gen datafs-${label}` };
}

/** Reads a file through the page cache (untimed) when it fits in half the memory; a bigger one is read cold by every contender alike. */
async function warm(...files) {
  for (const f of files) if (statSync(f).size <= os.totalmem() / 2) await run('sh', ['-c', 'cat "$1" > /dev/null', 'sh', f]);
}

/** The trials of `cases` (bench-lib's loop), summarized; `big` runs one round without warm-up unless BENCH_ROUNDS is set. */
async function trialsOf(cases, big = false) {
  const rounds = big && !process.env.BENCH_ROUNDS ? 1 : S.rounds;
  const warmupRounds = big && !process.env.BENCH_WARMUP_ROUNDS ? 0 : S.warmupRounds;
  const trials = await runTrials(cases, { rounds, warmupRounds, quietWait: S.quietWait, hotMb: S.hotMb, warm });
  return summarize(cases, trials).results;
}

// ---------------------------------------------------------------------------
// 1. The index

async function indexBench() {
  const big = await bigDataFs();
  const bytes = statSync(big.file).size;
  log(`index: ${big.file} (${(bytes / 1e9).toFixed(2)} GB, ${big.source})`);
  const indexOut = path.join(DATA, 'bench.index');
  /** What each case's child printed, by case id (the last trial's). */
  const printed = {};
  const childCase = (id, name, what, target) => ({
    id,
    name,
    inputs: [big.file],
    target,
    cmd: async () => {
      const r = await run(process.execPath, [...S.nodeArgs, SELF, '--child', what, big.file, indexOut], { capture: true, timed: true });
      printed[id] = JSON.parse(r.stdout);
      return r;
    },
    cleanup: () => fsp.rm(indexOut, { force: true }),
  });
  const cases = [
    childCase('read', 'plain sequential read of the file', 'read'),
    childCase('index', 'the index: scan (two threads) + fsIndex file written', 'index', { of: 'read', max: 1.2 }),
    childCase('index-one', 'the same on one thread (before the split)', 'index-one'),
  ];
  if (process.env.BENCH_SCAN_MAP === '1') cases.push(childCase('map', 'the same scan into a JS Map (the index before; nothing written)', 'map'));
  const results = await trialsOf(cases, bytes > 4 * 2 ** 30);
  for (const r of results) r.maxRssMB = +printed[r.id].maxRssMB.toFixed(0);
  return { file: big.file, source: big.source, bytes, objects: printed.index.objects, indexBytes: printed.index.indexBytes, results };
}

// ---------------------------------------------------------------------------
// 2. The live scan: from the start, then continued from the cache file

async function liveScanBench() {
  // A deployment around a copy of bench-gen's 1 GiB file: the appended
  // transactions go into the copy, never into the generated file.
  const root = path.join(DATA, 'live');
  const fsDir = path.join(root, 'var', 'filestorage');
  await fsp.rm(root, { recursive: true, force: true });
  await fsp.mkdir(fsDir, { recursive: true });
  await fsp.mkdir(path.join(root, 'var', 'backups'), { recursive: true });
  const file = path.join(fsDir, 'Data.fs');
  await fsp.copyFile(await generated('1G'), file);
  const size = statSync(file).size;
  const dep = await engine.discoverDeployment(root);
  const s = dep.storages[0];
  const check = async (opts) => {
    let report;
    const t0 = performance.now();
    await engine.checkLive(s, { ...opts, onScan: (r) => (report = r) });
    return { seconds: (performance.now() - t0) / 1000, ...report };
  };
  try {
    const full = await check({ noPersist: true });
    const fullOff = await check({ noPersist: true, offThread: true });
    const first = await check({});
    // Append 16 MB of transactions, as a site would (the writer: vote, finish), then a new check.
    const w = await engine.FileStorageWriter.open(file);
    const rand = rng(7);
    while (w.end - size < 16 << 20) {
      const records = [];
      for (let i = 0; i < 10; i++) records.push({ oid: Math.floor(rand() * 1000), data: Buffer.alloc(1000, i) });
      await w.commit({ user: '/ admin', description: 'appended', records });
    }
    await w.close({ writeIndex: false });
    const appended = statSync(file).size - size;
    const next = await check({});
    return {
      dataFsBytes: size,
      fullScan: { seconds: full.seconds, scanned: full.scanned, mbPerSecond: full.scanned / 1048576 / full.seconds },
      fullScanWorker: { seconds: fullOff.seconds, offThread: fullOff.offThread },
      firstCheckPersisted: { seconds: first.seconds, persisted: first.persisted },
      appendedBytes: appended,
      continued: { seconds: next.seconds, from: next.from, scanned: next.scanned },
    };
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// 3. list on a repository with 500 pieces

/** A deployment whose repository holds 500 gzip pieces (made once). */
async function ensureList500() {
  const root = path.join(DATA, 'list500');
  const ready = path.join(root, 'ready');
  const file = path.join(root, 'var', 'filestorage', 'Data.fs');
  const repo = path.join(root, 'var', 'backups');
  if (!existsSync(ready)) {
    log('list: making a repository of 500 pieces (once)');
    await fsp.rm(root, { recursive: true, force: true });
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.mkdir(repo, { recursive: true });
    const w = await engine.FileStorageWriter.create(file, { blobDir: path.join(root, 'var', 'blobstorage') });
    const rand = rng(500);
    const base = Date.UTC(2024, 0, 1);
    for (let i = 0; i < 500; i++) {
      for (let t = 0; t < 3; t++) {
        const records = [];
        for (let r = 0; r < 5; r++) records.push({ oid: Math.floor(rand() * 2000), data: Buffer.alloc(300 + Math.floor(rand() * 2000), r) });
        if (rand() < 0.2) records.push({ oid: w.newOid(), data: engine.BLOB_PICKLE, blob: Buffer.from(`blob ${i} ${t}`) });
        await w.commit({ user: '/ admin', description: `edit ${i}.${t}`, records });
      }
      await engine.backup({ file, repository: repo, gzip: true, quick: true, full: i === 0, now: () => new Date(base + i * 3600_000) });
    }
    await w.close({ writeIndex: false });
    await fsp.writeFile(ready, 'ok\n');
  }
  return { root, repo };
}

async function listBench() {
  const { root, repo } = await ensureList500();
  const pieces = readdirSync(repo).filter((n) => /\.(fs|fsz|deltafs|deltafsz)$/.test(n)).length;
  const cache = path.join(repo, engine.CACHE_FILE);
  let listed;
  const list = async () => {
    const r = await run(process.execPath, [...S.nodeArgs, S.cli, 'list', '--dir', root, '--json'], { capture: true, timed: true });
    listed = JSON.parse(r.stdout);
    return r;
  };
  const cases = [
    { id: 'node', name: "node's start alone (`node -e 0`)", inputs: [], cmd: () => run(process.execPath, ['-e', '0'], { timed: true }) },
    {
      id: 'list-cold',
      name: `\`plone-backup list --json\`, ${pieces} pieces, no piece cache (every piece walked)`,
      inputs: [],
      setup: () => fsp.rm(cache, { force: true }),
      cmd: list,
    },
    {
      id: 'list',
      name: `\`plone-backup list --json\`, ${pieces} pieces, from the piece cache`,
      inputs: [],
      setup: async () => existsSync(cache) || (await list()),
      cmd: list,
      target: { seconds: 1 },
    },
  ];
  const results = await trialsOf(cases);
  // The engine's part, in process: describeRepository from the cache.
  let engineSeconds = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await engine.describeRepository(repo);
    engineSeconds = Math.min(engineSeconds, (performance.now() - t0) / 1000);
  }
  return { pieces, listedChains: Array.isArray(listed) ? listed.length : undefined, describeRepositoryCachedSeconds: +engineSeconds.toFixed(3), results };
}

// ---------------------------------------------------------------------------
// The run and its report

const index = PARTS.includes('index') ? await indexBench() : undefined;
if (PARTS.includes('live')) log('live scan: from the start, then continued after 16 MB appended');
const live = PARTS.includes('live') ? await liveScanBench() : undefined;
const list = PARTS.includes('list') ? await listBench() : undefined;

await writeResults(path.join(OUT, 'results-scan.json'), S, { loadAverage: os.loadavg(), index, live, list });
const columns = [
  ['seconds', true, (r) => fmt(r.seconds)],
  ['CPU s', true, (r) => (r.cpuSeconds === undefined ? '' : fmt(r.cpuSeconds))],
  ['peak RSS', true, (r) => (r.maxRssMB === undefined ? '' : `${r.maxRssMB} MB`)],
  ['ratio', true, (r) => (r.ratio === undefined ? '' : `${fmt(r.ratio)} ×`)],
];
console.log('\nScale of check, list and the index (issue 11, goal 3)\n');
if (index) {
  printReport({
    about: `The index of ${(index.bytes / 1e9).toFixed(1)} GB, ${(index.objects / 1e6).toFixed(2)} M objects (${(index.indexBytes / 1e6).toFixed(0)} MB .index; ${index.source}); ${aboutRun(S)}; load average ${os.loadavg()[0].toFixed(1)}`,
    columns,
    results: index.results,
  });
}
if (live) {
  const only = live.continued.from === 'disk' && live.continued.scanned === live.appendedBytes;
  console.log(`
The live scan of ${(live.dataFsBytes / 1e9).toFixed(2)} GB: from the start ${fmt(live.fullScan.seconds)} s (${fmt(live.fullScan.mbPerSecond, 0)} MB/s), in a worker ${fmt(live.fullScanWorker.seconds)} s; after ${live.appendedBytes} bytes appended, continued from the cache file in ${fmt(live.continued.seconds)} s, ${live.continued.scanned} bytes scanned: ${only ? 'only the appended bytes (met)' : '**MISSED**: not only the appended bytes'}.`);
}
if (list) {
  console.log('');
  printReport({
    about: `list: ${list.pieces} pieces; describeRepository from the cache, in process: ${fmt(list.describeRepositoryCachedSeconds, 3)} s; ${aboutRun(S)}`,
    columns: columns.filter(([h]) => h !== 'peak RSS' && h !== 'ratio'),
    results: list.results,
  });
}
