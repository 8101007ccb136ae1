// Issue 11, goal 3: restore and check scale too. Three measurements, each a
// ratio against a baseline measured in the same run (the machine is shared):
//
//   1. The index of a big Data.fs (default 1 GB, ~1 million objects; the
//      10 GB / 10 million objects file of bench-curves when it is there) built
//      and written (the scan a backup does when it has no usable .index, then
//      the fsIndex pickle to disk) against a plain sequential read of the same
//      file, each in a child process of its own so its peak RSS is its own.
//      Target: ≤ 1.2 × the read, in bounded memory.
//   2. The live scan `check` does: from the start, then, after some MB were
//      appended, continued from the cache file (a new process: no memory).
//      The continued scan reads only the appended bytes.
//   3. `plone-backup list` on a deployment whose repository has 500 pieces,
//      from its piece cache. Target: under a second (node's start included).
//
//   node scripts/bench-scan.mjs           (part of npm run bench)
//   BENCH_SCAN_MB=2048 node scripts/bench-scan.mjs   (a 2 GB Data.fs)
//   BENCH_SCAN_FILE=/path/Data.fs                    (any FileStorage, read only)
//
// Data is generated once under bench-data/scan/ (git-ignored; BENCH_DATA=DIR
// for another bench-data folder, e.g. the main checkout's from a worktree). Results in
// out/bench/results-scan.json. A benchmark reports; it does not gate.

import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { promises as fsp, existsSync, readdirSync, statSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ROOT, loadEngine, log, rng } from './bench-lib.mjs';

const BENCH_DATA = process.env.BENCH_DATA ? path.resolve(process.env.BENCH_DATA) : path.join(ROOT, 'bench-data');
const DATA = path.join(BENCH_DATA, 'scan');
const OUT = path.join(ROOT, 'out', 'bench');
const ENGINE = path.join(OUT, 'engine-scan.js');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SIZE_MB = Number(process.env.BENCH_SCAN_MB ?? 1024);
const RECORD = 1024; // bytes a record takes, header included: a 10 GB file holds 10 million objects
const GENERATOR = 1;
const PARTS = (process.env.BENCH_SCAN_PARTS ?? 'index,live,list').split(',');

// ---------------------------------------------------------------------------
// Child mode: one measured operation in a fresh process.

if (process.argv[2] === '--child') {
  const [, , , what, file, out] = process.argv;
  const engine = (await import('node:module')).createRequire(import.meta.url)(ENGINE);
  const t0 = performance.now();
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
  } else if (what === 'map') {
    // For comparison only: the same scan into one JS Map entry per oid (the index before issue 11).
    const st = await engine.openFileStorage(file);
    const map = new Map();
    try {
      await engine.scanRange(st, 4, st.size, { noBlobCheck: true, onRecord: (k, pos) => map.set(k, pos) });
      extra = { objects: map.size };
    } catch (e) {
      extra = { failed: String(e.message ?? e) };
    } finally {
      await st.fh.close();
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ seconds, maxRssMB: process.resourceUsage().maxRSS / 1024, ...extra }));
  process.exit(0);
}

function child(what, file, out) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [path.join(ROOT, 'scripts', 'bench-scan.mjs'), '--child', what, file, out ?? ''], { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    c.stdout.on('data', (d) => (s += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(s)) : reject(new Error(`${what} failed (${code})`))));
  });
}

function runNode(args) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => (code === 0 ? resolve({ seconds: (performance.now() - t0) / 1000, stdout: out }) : reject(new Error(`${args.join(' ')}: ${code} ${err}`))));
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x, d = 2) => x.toFixed(d);

await fsp.mkdir(OUT, { recursive: true });
await fsp.mkdir(DATA, { recursive: true });
const engine = await loadEngine(ENGINE);
// The live scan's worker beside the bench bundle (as dist/scanworker.js beside the extension's).
await build({
  entryPoints: [path.join(ROOT, 'src', 'engine', 'zodb', 'scanworker.ts')],
  outfile: path.join(OUT, 'scanworker.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  logLevel: 'warning',
});

// ---------------------------------------------------------------------------
// The data

/** Writes a Data.fs of about `bytes` with one new object per RECORD bytes (1 in 50 a Blob record). */
async function generate(file, bytes) {
  const t0 = performance.now();
  const tmp = `${file}.part`;
  const fh = await fsp.open(tmp, 'w');
  const rand = rng(0x5ca1e);
  const filler = Buffer.alloc(1 << 20);
  for (let i = 0; i < filler.length; i++) filler[i] = Math.floor(rand() * 256);
  const head = Buffer.from('\x80\x03cPersistence.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01U\x04dataq\x02', 'latin1');
  let pos = 4;
  let oid = 0;
  let txns = 0;
  let lastTid;
  let clock = Date.UTC(2024, 0, 1);
  let batch = [Buffer.from('FS30', 'latin1')];
  let batchLen = 4;
  let written = 0;
  const flush = async () => {
    const b = Buffer.concat(batch, batchLen);
    await fh.write(b, 0, b.length, written);
    written += b.length;
    batch = [];
    batchLen = 0;
  };
  const user = Buffer.from('/ admin');
  const desc = Buffer.from('/Plone/folder/doc/@@edit');
  while (pos < bytes) {
    clock += 1000;
    const tid = engine.newTid(new Date(clock), lastTid);
    lastTid = tid;
    const n = 5 + Math.floor(rand() * 10);
    const parts = [];
    let p = pos + engine.TRANS_HDR_LEN + user.length + desc.length;
    for (let r = 0; r < n; r++) {
      const blob = oid % 50 === 49;
      const plen = blob ? engine.BLOB_PICKLE.length : RECORD - engine.DATA_HDR_LEN;
      parts.push(engine.encodeDataHeader({ oid: engine.oidFromKey(oid++), tid, prev: 0, tloc: pos, vlen: 0, plen }));
      if (blob) parts.push(engine.BLOB_PICKLE);
      else {
        const at = Math.floor(rand() * (filler.length - plen));
        parts.push(head, filler.subarray(at, at + plen - head.length));
      }
      p += engine.DATA_HDR_LEN + plen;
    }
    const tlen = p - pos;
    const trailer = Buffer.alloc(8);
    engine.writeU64(trailer, tlen, 0);
    const txn = [engine.encodeTxnHeader({ tid, tlen, status: ' ', ulen: user.length, dlen: desc.length, elen: 0 }), user, desc, ...parts, trailer];
    for (const b of txn) {
      batch.push(b);
      batchLen += b.length;
    }
    pos += tlen + 8;
    txns++;
    if (batchLen >= 16 << 20) await flush();
  }
  await flush();
  await fh.close();
  const walk = await engine.committedEnd(tmp);
  if (walk.end !== pos) throw new Error(`generated file does not check out: ends at ${walk.end}, not ${pos}`);
  await fsp.rename(tmp, file);
  const info = { generator: GENERATOR, bytes: pos, transactions: txns, objects: oid, seconds: +((performance.now() - t0) / 1000).toFixed(1) };
  await fsp.writeFile(`${file}.json`, JSON.stringify(info, null, 2) + '\n');
  log(`generated ${file}: ${pos} bytes, ${txns} transactions, ${oid} objects in ${info.seconds} s`);
  return info;
}

/** The 10 GB Data.fs of bench-curves, when it finished (a *.done marker), else ours. */
async function bigDataFs() {
  if (process.env.BENCH_SCAN_FILE) return { file: path.resolve(process.env.BENCH_SCAN_FILE), source: 'BENCH_SCAN_FILE', ours: false };
  const gen = path.join(BENCH_DATA, 'gen');
  if (!process.env.BENCH_SCAN_MB && existsSync(gen)) {
    for (const m of readdirSync(gen).filter((n) => n.endsWith('.done'))) {
      const base = path.join(gen, m.slice(0, -'.done'.length));
      for (const f of [base, path.join(base, 'Data.fs'), path.join(base, 'var', 'filestorage', 'Data.fs'), `${base}.fs`]) {
        if (existsSync(f) && statSync(f).isFile() && statSync(f).size > 5e9) return { file: f, source: `bench-curves (${m})`, ours: false };
      }
    }
  }
  const file = path.join(DATA, `Data-${SIZE_MB}.fs`);
  const meta = `${file}.json`;
  const ok = existsSync(file) && existsSync(meta) && JSON.parse(readFileSync(meta, 'utf8')).generator === GENERATOR;
  if (!ok) await generate(file, SIZE_MB * 1024 * 1024);
  return { file, source: `generated (${SIZE_MB} MB)`, ours: true };
}

// ---------------------------------------------------------------------------
// 1. The index

const big = await bigDataFs();
const bigSize = statSync(big.file).size;
async function indexBench() {
  log(`index: ${big.file} (${(bigSize / 1e9).toFixed(2)} GB, ${big.source})`);
  const indexOut = path.join(DATA, 'bench.index');
  await child('read', big.file); // warm the page cache: both sides read from it
  const reads = [];
  const builds = [];
  let built;
  for (let i = 0; i < ROUNDS; i++) {
    reads.push(await child('read', big.file));
    built = await child('index', big.file, indexOut);
    builds.push(built);
  }
  const mapRun = process.env.BENCH_SCAN_MAP === '0' ? undefined : await child('map', big.file);
  await fsp.rm(indexOut, { force: true });
  const readS = median(reads.map((r) => r.seconds));
  const buildS = median(builds.map((r) => r.seconds));
  const indexResult = {
    file: big.file,
    source: big.source,
    bytes: bigSize,
    objects: built.objects,
    indexBytes: built.indexBytes,
    readSeconds: readS,
    readRssMB: Math.max(...reads.map((r) => r.maxRssMB)),
    buildWriteSeconds: buildS,
    ratio: buildS / readS,
    target: 1.2,
    peakRssMB: Math.max(...builds.map((r) => r.maxRssMB)),
    mapComparison: mapRun,
  };
  return indexResult;
}
const indexResult = PARTS.includes('index') ? await indexBench() : undefined;

// ---------------------------------------------------------------------------
// 2. The live scan: from the start, then continued from the cache file

async function liveScanBench() {
  // A deployment around our own big file (a hard link when it is ours: appending to it and cutting it back
  // leaves the bytes the index measured as they were; another's file is copied never, only read).
  const root = path.join(DATA, 'live');
  const fsDir = path.join(root, 'var', 'filestorage');
  await fsp.rm(root, { recursive: true, force: true });
  await fsp.mkdir(fsDir, { recursive: true });
  await fsp.mkdir(path.join(root, 'var', 'backups'), { recursive: true });
  const file = path.join(fsDir, 'Data.fs');
  const src = big.ours ? big.file : path.join(DATA, `Data-${SIZE_MB}.fs`);
  if (!existsSync(src)) await generate(src, SIZE_MB * 1024 * 1024);
  await fsp.link(src, file);
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
    // Append 16 MB of transactions, as a site would (the writer: vote, finish), then a new process's check.
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
    // Our file back as it was (the appended transactions cut off), the link removed.
    await fsp.truncate(file, size);
    await fsp.rm(root, { recursive: true, force: true });
  }
}
if (PARTS.includes('live')) log('live scan: from the start, then continued after 16 MB appended');
const liveResult = PARTS.includes('live') ? await liveScanBench() : undefined;

// ---------------------------------------------------------------------------
// 3. list on a repository with 500 pieces

async function list500() {
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
  const pieces = readdirSync(repo).filter((n) => /\.(fs|fsz|deltafs|deltafsz)$/.test(n)).length;
  const cache = path.join(repo, engine.CACHE_FILE);
  const cli = path.join(ROOT, 'dist', 'cli.js');
  await fsp.rm(cache, { force: true });
  const cold = await runNode([cli, 'list', '--dir', root, '--json']);
  const warm = [];
  for (let i = 0; i < 5; i++) warm.push((await runNode([cli, 'list', '--dir', root, '--json'])).seconds);
  const listed = JSON.parse(cold.stdout);
  const node = [];
  for (let i = 0; i < 5; i++) node.push((await runNode(['-e', '0'])).seconds);
  // In process: describeRepository alone, from the cache.
  const inproc = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await engine.describeRepository(repo);
    inproc.push((performance.now() - t0) / 1000);
  }
  return {
    pieces,
    listedChains: Array.isArray(listed) ? listed.length : undefined,
    coldSeconds: cold.seconds,
    warmSeconds: median(warm),
    nodeStartSeconds: median(node),
    describeRepositoryWarmSeconds: median(inproc),
    target: 1,
  };
}
const listResult = PARTS.includes('list') ? await list500() : undefined;

// ---------------------------------------------------------------------------
// Report

const results = { date: new Date().toISOString(), node: process.version, index: indexResult, live: liveResult, list: listResult };
await fsp.writeFile(path.join(OUT, 'results-scan.json'), JSON.stringify(results, null, 2) + '\n');
const ix = indexResult;
const lv = liveResult;
const ls = listResult;
const verdict = (ok) => (ok ? 'met' : 'MISSED');
const rows = [];
if (ix) {
  rows.push(
    `| index of ${(ix.bytes / 1e9).toFixed(1)} GB, ${(ix.objects / 1e6).toFixed(2)} M objects: scan + write (${(ix.indexBytes / 1e6).toFixed(0)} MB .index) | ${fmt(ix.buildWriteSeconds)} s, peak RSS ${fmt(ix.peakRssMB, 0)} MB | plain read ${fmt(ix.readSeconds)} s (RSS ${fmt(ix.readRssMB, 0)} MB) | ${fmt(ix.ratio)} ≤ 1.2: ${verdict(ix.ratio <= 1.2)} |`,
  );
  const m = ix.mapComparison;
  if (m) rows.push(`| the same scan into a JS Map (before) | ${m.failed ? `failed: ${m.failed}` : `${fmt(m.seconds)} s, peak RSS ${fmt(m.maxRssMB, 0)} MB`} | | |`);
}
if (lv) {
  rows.push(
    `| live scan of ${(lv.dataFsBytes / 1e9).toFixed(1)} GB from the start | ${fmt(lv.fullScan.seconds)} s (${fmt(lv.fullScan.mbPerSecond, 0)} MB/s); in a worker ${fmt(lv.fullScanWorker.seconds)} s | | |`,
  );
  const only = lv.continued.from === 'disk' && lv.continued.scanned === lv.appendedBytes;
  rows.push(
    `| live scan after ${(lv.appendedBytes / 1048576).toFixed(0)} MB appended, new process (from the cache file) | ${fmt(lv.continued.seconds)} s, ${lv.continued.scanned} bytes scanned | ${lv.appendedBytes} bytes appended | ${only ? 'only the appended bytes' : 'MISSED'} |`,
  );
}
if (ls) {
  rows.push(
    `| \`plone-backup list\`, ${ls.pieces} pieces, from the cache (node's start included) | ${fmt(ls.warmSeconds)} s | cold (walks every piece) ${fmt(ls.coldSeconds)} s; node alone ${fmt(ls.nodeStartSeconds)} s | < 1 s: ${verdict(ls.warmSeconds < 1)} |`,
  );
  rows.push(`| describeRepository (${ls.pieces} pieces) from the cache, in process | ${fmt(ls.describeRepositoryWarmSeconds, 3)} s | | |`);
}
console.log(`
Scale of check, list and the index (issue 11, goal 3)

| case | figure | baseline | ratio / target |
| --- | ---: | ---: | ---: |
${rows.join('\n')}
`);
