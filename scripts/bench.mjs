#!/usr/bin/env node
// Benchmark of the repozo-compatible engine against md5sum and cp, end to end.
//
//   npm run bench                      # 1 GB Data.fs (generated once, cached in bench-data/)
//   BENCH_SIZE_MB=100 npm run bench    # a quick try
//
// Other knobs: BENCH_ROUNDS (default 3: best of 3), BENCH_CASES (comma list of
// case ids, e.g. "full,recover-verify"; md5sum and cp always run), BENCH_CLI
// (another built CLI to time, for A/B comparisons; default dist/cli.js),
// BENCH_NODE_ARGS (extra node flags for the CLI children, e.g.
// "--cpu-prof --cpu-prof-dir=bench-data/prof"), BENCH_QUIET_WAIT (seconds to
// wait, at most, for the CPUs to be idle before each trial; default 60),
// BENCH_WARMUP_ROUNDS (untimed rounds of every case first; default 1),
// BENCH_GZIP_LEVELS=1 (also the full gzip backup at --compress-level 1, 3 and 9;
// or name full-gzip-l1, -l3, -l9 in BENCH_CASES).
//
// gzip: our full gzip backup against the real repozo's (`repozo -B -F -z`,
// Python's gzip at level 9) on the same Data.fs, in time and in compressed size,
// and reading gzip pieces back (verify, recover) from our multi-member pieces
// and from repozo's single-member one. The real repozo is the test oracles'
// ZODB (../shared/oracles/setup.sh, or PLONE_BACKUP_ORACLES); without it those
// cases are left out.
//
// Honesty rules: every contender works on the same cached Data.fs in the same
// run, is a child process started the same way (spawn, wall clock from spawn to
// exit), runs with the page cache warm (a read of every input before each
// trial) and with no dirty pages left over from the previous trial (`sync`
// before each trial, untimed). A first, untimed round of every case warms what
// a read cannot.
//
// Memory: on a VM with free page reporting (virtio-balloon), memory that stays
// free for a couple of seconds is handed back to the host, and writing a
// gigabyte into it then costs several times the system time (cp: 0.3 s or 1.9 s
// of sys for the same copy). So each trial frees the previous trial's output
// right before it starts (after the warm-up read and the wait for a quiet
// machine), and just before that a throwaway process touches BENCH_HOT_MB
// (default 2048) of memory and exits, so every contender starts with memory
// the host has just backed (BENCH_HOT_MB=0 turns that off). Each figure is the best of BENCH_ROUNDS trials;
// the rounds go round-robin over the cases so a burst of load elsewhere hits
// all contenders alike, and each trial waits (untimed, up to BENCH_QUIET_WAIT
// seconds) until the machine's CPUs are at least 90% idle. CPU time (user +
// sys) of every trial is recorded too, through /usr/bin/time when present.
//
// The engine is bundled from src/engine/index.ts on the fly (out/bench/engine.js)
// and used here only to generate the data and to check results; what is timed
// is the built CLI, dist/cli.js.

import { ROOT, aboutRun, findRealRepozo, loadEngine, log, newDir, printReport, rmrf, rng, run, runTrials, selectCases, settings, summarize, writeResults } from './bench-lib.mjs';
import { promises as fsp, existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

const DATA_DIR = path.join(ROOT, 'bench-data');
const RUN_DIR = path.join(DATA_DIR, 'run');
const S = settings();
const CLI = S.cli;
const GENERATOR_VERSION = 1;

const SIZE_MB = Number(process.env.BENCH_SIZE_MB ?? 1024);
const QUICK_NEW_BYTES = 1024 * 1024;

if (!(SIZE_MB > 0)) throw new Error(`BENCH_SIZE_MB must be a positive number, not ${process.env.BENCH_SIZE_MB}`);
if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm run bench does).`);

// ---------------------------------------------------------------------------
// The engine, bundled for this script

const engine = await loadEngine(path.join(ROOT, 'out', 'bench', 'engine.js'));

// ---------------------------------------------------------------------------
// Realistic transactions

const WORDS = (
  'plone zope zodb portal catalog folder document news item event image file collection workflow ' +
  'review state published private title description text subject creator contributor effective ' +
  'expires language rights modified created uid path index metadata brain bucket btree length ' +
  'annotation behavior relation intid lorem ipsum dolor sit amet consectetur adipiscing elit sed do ' +
  'eiusmod tempor incididunt ut labore et dolore magna aliqua'
).split(' ');

/** Text to slice pickle payloads from (a little under 2 MB of words). */
function makeCorpus(rand) {
  const parts = [];
  let n = 0;
  while (n < 2_000_000) {
    const w = WORDS[Math.floor(rand() * WORDS.length)];
    parts.push(w);
    n += w.length + 1;
  }
  return Buffer.from(parts.join(' '), 'latin1');
}

const CLASSES = [
  ['persistent.mapping', 'PersistentMapping'],
  ['BTrees.OOBTree', 'OOBucket'],
  ['BTrees.IOBTree', 'IOBucket'],
  ['BTrees.OIBTree', 'OIBucket'],
  ['BTrees.Length', 'Length'],
  ['plone.app.contenttypes.content', 'Document'],
  ['plone.app.contenttypes.content', 'Folder'],
  ['plone.app.contenttypes.content', 'NewsItem'],
  ['Products.ZCatalog.Catalog', 'Catalog'],
  ['zope.annotation.attribute', 'AttributeAnnotations'],
].map(([m, c]) => Buffer.from(`\x80\x03c${m}\n${c}\nq\x00.`, 'latin1'));

const STATE_HEAD = Buffer.from([0x80, 0x03, 0x7d, 0x71, 0x01, 0x28]); // PROTO 3, EMPTY_DICT, BINPUT 1, MARK
const STATE_TAIL = Buffer.from([0x75, 0x2e]); // SETITEMS, STOP

function binunicode(b) {
  const h = Buffer.alloc(5);
  h[0] = 0x58;
  h.writeUInt32LE(b.length, 1);
  return h;
}
const KEY_TEXT = Buffer.from('text', 'latin1');

/** A pickle of about `size` bytes: a class reference, then a dict state with a text value. */
function pickle(rand, corpus, size) {
  const cls = CLASSES[Math.floor(rand() * CLASSES.length)];
  const n = Math.max(16, size - cls.length - STATE_HEAD.length - 10 - KEY_TEXT.length - STATE_TAIL.length);
  const off = Math.floor(rand() * (corpus.length - n));
  const text = corpus.subarray(off, off + n);
  return Buffer.concat([cls, STATE_HEAD, binunicode(KEY_TEXT), KEY_TEXT, binunicode(text), text, STATE_TAIL]);
}

/** A transaction extension as ZODB stores it: a protocol-3 pickle of a small dict. */
function extension(url) {
  const k = Buffer.from('request_url', 'latin1');
  const v = Buffer.from(url, 'utf8');
  return Buffer.concat([Buffer.from([0x80, 0x03, 0x7d, 0x71, 0x00, 0x28]), binunicode(k), k, binunicode(v), v, STATE_TAIL]);
}

/**
 * Makes transactions like a Plone site's: 1 to 6 records, pickles of a few
 * hundred bytes to a few KB (log-uniform, some bigger catalog buckets), a hot
 * set of objects (catalog, folder, BTrees) touched often, new objects now and then.
 */
class TxnMaker {
  constructor(seed, oids = [], nextOid = 0) {
    this.rand = rng(seed);
    this.corpus = makeCorpus(this.rand);
    this.oids = oids; // numeric oid keys known so far
    this.nextOid = nextOid;
    this.n = 0;
  }

  oid() {
    const r = this.rand;
    if (this.oids.length < 50 || r() < 0.25) {
      const k = this.nextOid++;
      this.oids.push(k);
      return k;
    }
    if (r() < 0.4) return this.oids[Math.floor(r() * Math.min(200, this.oids.length))]; // hot objects
    return this.oids[Math.floor(r() * this.oids.length)];
  }

  size() {
    const r = this.rand;
    if (r() < 0.05) return 4000 + Math.floor(r() * 8000); // big buckets
    return Math.floor(200 * Math.exp(r() * Math.log(4000 / 200))); // 200 B .. 4 KB
  }

  txn() {
    const r = this.rand;
    const n = 1 + Math.floor(r() * r() * 6);
    const records = [];
    const used = new Set();
    for (let i = 0; i < n; i++) {
      const k = this.oid();
      if (used.has(k)) continue;
      used.add(k);
      records.push({ oid: engine.oidFromKey(k), data: pickle(r, this.corpus, this.size()) });
    }
    const id = this.n++;
    const url = `http://localhost:8080/Plone/folder-${id % 97}/doc-${id}/@@edit`;
    return {
      user: r() < 0.8 ? '/ admin' : `acl_users editor${id % 13}`,
      description: `/Plone/folder-${id % 97}/doc-${id}`,
      extension: r() < 0.5 ? extension(url) : undefined,
      records,
    };
  }
}

// ---------------------------------------------------------------------------
// Generating the Data.fs (cached)

async function writeAll(fh, buf, pos) {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos + off);
    off += bytesWritten;
  }
}

/**
 * Writes a Data.fs of about `bytes` bytes: transactions encoded by the
 * engine's FileStorageWriter (prev pointers from its index, tloc, trailers),
 * with increasing tids, written in 16 MB batches.
 */
async function generate(file, bytes) {
  const t0 = performance.now();
  const tmp = `${file}.part`;
  await fsp.rm(tmp, { force: true });
  const w = await engine.FileStorageWriter.create(tmp); // writes the FS30 magic
  await w.close();
  const fh = await fsp.open(tmp, 'r+');
  const maker = new TxnMaker(0x5eed);
  let pos = 4;
  let written = 4;
  let lastTid;
  let clock = Date.UTC(2023, 0, 2, 8, 0, 0);
  let batch = [];
  let batchLen = 0;
  let txns = 0;
  let records = 0;
  const flush = async () => {
    if (!batchLen) return;
    const b = Buffer.concat(batch, batchLen);
    await writeAll(fh, b, written);
    written += b.length;
    batch = [];
    batchLen = 0;
  };
  try {
    while (pos < bytes) {
      clock += 500 + Math.floor(maker.rand() * 30_000);
      const tid = engine.newTid(new Date(clock), lastTid);
      const txn = maker.txn();
      const { bytes: enc, positions } = w.encode(txn, tid, pos, ' ');
      for (const [oid, p] of positions) w.index.set(oid, p);
      batch.push(enc);
      batchLen += enc.length;
      pos += enc.length;
      lastTid = tid;
      txns++;
      records += txn.records.length;
      if (batchLen >= 16 * 1024 * 1024) {
        await flush();
        if (process.stderr.isTTY) process.stderr.write(`\rgenerating ${path.basename(file)}: ${(pos / 1048576).toFixed(0)} of ${SIZE_MB} MB`);
      }
    }
    await flush();
  } finally {
    await fh.close();
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  // The engine must agree that every byte is committed.
  const walk = await engine.committedEnd(tmp);
  if (walk.end !== pos || walk.size !== pos || walk.txnCount !== txns) {
    throw new Error(`generated file does not check out: end ${walk.end}, size ${walk.size}, ${walk.txnCount} transactions; expected ${pos}, ${txns}`);
  }
  await fsp.rename(tmp, file);
  const info = {
    generator: GENERATOR_VERSION,
    bytes: pos,
    transactions: txns,
    records,
    objects: maker.nextOid,
    generationSeconds: +((performance.now() - t0) / 1000).toFixed(1),
  };
  await fsp.writeFile(`${file}.json`, JSON.stringify(info, null, 2) + '\n');
  log(`generated ${file}: ${pos} bytes, ${txns} transactions, ${records} records, ${maker.nextOid} objects in ${info.generationSeconds} s`);
  return info;
}

/** Appends at least `bytes` bytes of committed transactions to an existing Data.fs (vote + finish, as ZODB). */
async function appendTransactions(file, bytes) {
  const w = await engine.FileStorageWriter.open(file);
  const start = w.end;
  const oids = [...w.index.map.keys()].filter((k) => typeof k === 'number');
  const maker = new TxnMaker(0xadd, oids, oids.reduce((m, k) => Math.max(m, k), -1) + 1);
  let n = 0;
  while (w.end - start < bytes) {
    await w.commit(maker.txn());
    n++;
  }
  await w.close();
  return { start, end: w.end, transactions: n };
}

// ---------------------------------------------------------------------------
// Running contenders

const repozo = (...args) => run(process.execPath, [...S.nodeArgs, CLI, 'repozo', ...args], { timed: true });
const REAL = await findRealRepozo();
const realRepozo = (...args) => run(REAL.python, ['-m', 'ZODB.scripts.repozo', ...args], { timed: true, env: REAL.env });
/** The --compress-level figures measured besides the default (BENCH_GZIP_LEVELS=1). */
const GZIP_LEVELS = [1, 3, 9];

/** Reads files through the page cache (untimed), so every trial starts warm. */
async function warm(...files) {
  for (const f of files) await run('cat', [f]);
}

async function repoFiles(repo) {
  return (await fsp.readdir(repo)).sort();
}

function md5Of(stdout) {
  return stdout.trim().split(/\s+/)[0];
}

async function readDatLines(repo) {
  const dats = (await repoFiles(repo)).filter((n) => n.endsWith('.dat'));
  if (dats.length !== 1) throw new Error(`${repo} should hold one .dat, has ${dats.join(', ') || 'none'}`);
  return engine.parseDat(await fsp.readFile(path.join(repo, dats[0]), 'latin1'));
}

// ---------------------------------------------------------------------------
// Main

async function main() {
  await fsp.mkdir(DATA_DIR, { recursive: true });
  const dataFile = path.join(DATA_DIR, `Data-${SIZE_MB}MB-v${GENERATOR_VERSION}.fs`);
  let info;
  if (existsSync(dataFile) && existsSync(`${dataFile}.json`)) {
    info = JSON.parse(readFileSync(`${dataFile}.json`, 'utf8'));
    log(`using cached ${path.relative(ROOT, dataFile)} (${info.bytes} bytes, ${info.transactions} transactions)`);
  } else {
    info = await generate(dataFile, SIZE_MB * 1024 * 1024);
  }

  await newDir(RUN_DIR);
  const P = (...p) => path.join(RUN_DIR, ...p);

  // Fixtures shared by several cases (untimed).
  log('preparing: reference md5, a full backup for the incremental and recover cases, a grown copy for the quick case');
  await warm(dataFile);
  const refMd5 = md5Of((await run('md5sum', [dataFile], { capture: true })).stdout);

  const repoInc = await newDir(P('repo-incremental'));
  await repozo('-B', '-F', '-f', dataFile, '-r', repoInc);
  const incFiles = await repoFiles(repoInc);
  const incLines = await readDatLines(repoInc);
  if (incLines.length !== 1 || incLines[0].md5 !== refMd5 || incLines[0].end !== info.bytes) {
    throw new Error(`the full backup does not match Data.fs: ${JSON.stringify(incLines)} vs md5 ${refMd5}, ${info.bytes} bytes`);
  }

  const grown = P('grown', 'Data.fs');
  await fsp.mkdir(path.dirname(grown), { recursive: true });
  await run('cp', [dataFile, grown]);
  const repoQuick = await newDir(P('repo-quick'));
  await repozo('-B', '-F', '-f', grown, '-r', repoQuick);
  const appended = await appendTransactions(grown, QUICK_NEW_BYTES);
  log(`appended ${appended.end - appended.start} bytes (${appended.transactions} transactions) to the grown copy`);
  const quickBaseline = await repoFiles(repoQuick);
  const quickDat = quickBaseline.find((n) => n.endsWith('.dat'));
  const quickDatText = await fsp.readFile(path.join(repoQuick, quickDat), 'latin1');
  const resetQuick = async () => {
    for (const n of await repoFiles(repoQuick)) if (!quickBaseline.includes(n)) await fsp.rm(path.join(repoQuick, n), { force: true });
    await fsp.writeFile(path.join(repoQuick, quickDat), quickDatText, 'latin1');
  };

  // gzip pieces to read back: ours (multi-member) and the real repozo's (one
  // member); made only when a case reads them.
  const GZ_READ = ['verify-gzip', 'verify-gzip-single', 'recover-gzip', 'repozo-recover-gzip'];
  const gzRead = !S.only || GZ_READ.some((id) => S.only.has(id));
  const repoGzFix = await newDir(P('repo-gzip-fixture'));
  const repoGzPyFix = REAL ? await newDir(P('repo-gzip-repozo-fixture')) : undefined;
  if (gzRead) {
    await repozo('-B', '-F', '-z', '-f', dataFile, '-r', repoGzFix);
    if (REAL) await realRepozo('-B', '-F', '-z', '-f', dataFile, '-r', repoGzPyFix);
  }
  const gzPieceOf = async (repo) =>
    gzRead
      ? path.join(
          repo,
          (await repoFiles(repo)).find((n) => n.endsWith('.fsz')),
        )
      : dataFile;
  const repoGz = P('repo-gzip');
  /** Compressed piece sizes by case id (the same in every trial). */
  const gzSizes = {};
  const checkGzip = (id, repo) => async () => {
    const l = await readDatLines(repo);
    if (!(l.length === 1 && l[0].md5 === refMd5 && l[0].end === info.bytes)) return `unexpected .dat ${JSON.stringify(l)}`;
    gzSizes[id] = (await fsp.stat(await gzPieceOf(repo))).size;
    return true;
  };
  const cpOut = P('cp', 'Data.fs');
  const repoFull = P('repo-full');
  const outDir = P('recovered');
  const recovered = path.join(outDir, 'Data.fs');
  const incPiece = path.join(
    repoInc,
    incFiles.find((n) => n.endsWith('.fs')),
  );

  /** Each case: setup (untimed), the timed command, a check of what it did (untimed). */
  const cases = [
    {
      id: 'md5sum',
      name: '`md5sum Data.fs`',
      inputs: [dataFile],
      cmd: () => run('md5sum', [dataFile], { capture: true, timed: true }),
      check: (r) => md5Of(r.stdout) === refMd5 || `md5sum says ${md5Of(r.stdout)}`,
    },
    {
      id: 'cp',
      name: '`cp Data.fs x`',
      inputs: [dataFile],
      setup: () => newDir(path.dirname(cpOut)),
      cmd: () => run('cp', [dataFile, cpOut], { timed: true }),
    },
    {
      id: 'cp-fsync',
      name: '`cp Data.fs x && sync x` (cp made durable, as a backup is)',
      inputs: [dataFile],
      setup: () => newDir(path.dirname(cpOut)),
      cmd: () => run('sh', ['-c', 'cp "$1" "$2" && sync "$2"', 'sh', dataFile, cpOut], { timed: true }),
    },
    {
      id: 'full',
      name: 'full backup `repozo -B -F`',
      inputs: [dataFile],
      target: { of: 'md5sum', max: 1.15 },
      setup: () => newDir(repoFull),
      cmd: () => repozo('-B', '-F', '-f', dataFile, '-r', repoFull),
      check: async () => {
        const l = await readDatLines(repoFull);
        return (l.length === 1 && l[0].md5 === refMd5 && l[0].end === info.bytes) || `unexpected .dat ${JSON.stringify(l)}`;
      },
    },
    {
      id: 'incremental-nothing-new',
      name: 'incremental `repozo -B`, nothing new',
      inputs: [dataFile, incPiece],
      target: { of: 'md5sum', max: 1.2 },
      cmd: () => repozo('-B', '-f', dataFile, '-r', repoInc),
      check: async () => JSON.stringify(await repoFiles(repoInc)) === JSON.stringify(incFiles) || 'it wrote something',
    },
    {
      id: 'quick-1mb-new',
      name: 'quick incremental `repozo -B -Q`, 1 MB new',
      inputs: [grown],
      target: { seconds: 1 },
      setup: resetQuick,
      cmd: () => repozo('-B', '-Q', '-f', grown, '-r', repoQuick),
      check: async () => {
        const l = await readDatLines(repoQuick);
        const last = l[l.length - 1];
        return (l.length === 2 && last.start === appended.start && last.end === appended.end) || `unexpected .dat ${JSON.stringify(l)}`;
      },
      cleanup: resetQuick,
    },
    {
      id: 'recover-verify',
      name: 'recover with verification `repozo -R -w -o`',
      inputs: [incPiece],
      target: { of: 'md5sum', max: 1.2 },
      setup: () => newDir(outDir),
      cmd: () => repozo('-R', '-w', '-r', repoInc, '-o', recovered),
      check: async () => (await fsp.stat(recovered)).size === info.bytes || 'wrong size',
    },
    {
      id: 'recover',
      name: 'recover `repozo -R -o`',
      inputs: [incPiece],
      setup: () => newDir(outDir),
      cmd: () => repozo('-R', '-r', repoInc, '-o', recovered),
      check: async () => (await fsp.stat(recovered)).size === info.bytes || 'wrong size',
    },
    {
      id: 'full-gzip',
      name: 'full gzip backup `repozo -B -F -z` (default level)',
      inputs: [dataFile],
      target: REAL ? { of: 'repozo-full-gzip', max: 0.4 } : undefined,
      setup: () => newDir(repoGz),
      cmd: () => repozo('-B', '-F', '-z', '-f', dataFile, '-r', repoGz),
      check: checkGzip('full-gzip', repoGz),
    },
    ...GZIP_LEVELS.map((level) => ({
      id: `full-gzip-l${level}`,
      name: `full gzip backup \`repozo -B -F -z --compress-level=${level}\``,
      inputs: [dataFile],
      levels: true,
      setup: () => newDir(repoGz),
      cmd: () => repozo('-B', '-F', '-z', `--compress-level=${level}`, '-f', dataFile, '-r', repoGz),
      check: checkGzip(`full-gzip-l${level}`, repoGz),
    })),
    ...(REAL
      ? [
          {
            id: 'repozo-full-gzip',
            name: 'the real repozo: `repozo -B -F -z` (Python, level 9)',
            inputs: [dataFile],
            setup: () => newDir(repoGz),
            cmd: () => realRepozo('-B', '-F', '-z', '-f', dataFile, '-r', repoGz),
            check: checkGzip('repozo-full-gzip', repoGz),
          },
        ]
      : []),
    {
      id: 'verify-gzip',
      name: 'verify `repozo -V` of our gzip piece (members inflated in parallel)',
      inputs: [await gzPieceOf(repoGzFix)],
      target: REAL ? { of: 'verify-gzip-single', max: 1 } : undefined,
      cmd: () => repozo('-V', '-r', repoGzFix),
    },
    ...(REAL
      ? [
          {
            id: 'verify-gzip-single',
            name: "verify `repozo -V` of the real repozo's gzip piece (one member, one stream)",
            inputs: [await gzPieceOf(repoGzPyFix)],
            cmd: () => repozo('-V', '-r', repoGzPyFix),
          },
        ]
      : []),
    {
      id: 'recover-gzip',
      name: 'recover with verification `repozo -R -w -o` from our gzip piece',
      inputs: [await gzPieceOf(repoGzFix)],
      target: REAL ? { of: 'repozo-recover-gzip', max: 1 } : undefined,
      setup: () => newDir(outDir),
      cmd: () => repozo('-R', '-w', '-r', repoGzFix, '-o', recovered),
      check: async () => (await fsp.stat(recovered)).size === info.bytes || 'wrong size',
    },
    ...(REAL
      ? [
          {
            id: 'repozo-recover-gzip',
            name: 'the real repozo: `repozo -R -o` from our gzip piece',
            inputs: [await gzPieceOf(repoGzFix)],
            setup: () => newDir(outDir),
            cmd: () => realRepozo('-R', '-r', repoGzFix, '-o', recovered),
            check: async () => (await fsp.stat(recovered)).size === info.bytes || 'wrong size',
          },
        ]
      : []),
  ].filter((c) => !c.levels || process.env.BENCH_GZIP_LEVELS === '1' || S.only?.has(c.id));

  const chosen = selectCases(cases, S.only, ['md5sum', 'cp']);
  const trials = await runTrials(chosen, { ...S, warm });
  // The working copies go (gigabytes); the cached Data.fs stays.
  await rmrf(RUN_DIR);

  const { results, best } = summarize(chosen, trials);
  const copyLike = new Set(['full', 'recover-verify', 'recover', 'cp-fsync']);
  for (const r of results) {
    r.vsMd5sum = +(r.seconds / best.md5sum).toFixed(3);
    r.vsCp = copyLike.has(r.id) ? +(r.seconds / best.cp).toFixed(3) : undefined;
    if (gzSizes[r.id] !== undefined) {
      r.compressedBytes = gzSizes[r.id];
      if (gzSizes['repozo-full-gzip']) r.vsRepozoSize = +(gzSizes[r.id] / gzSizes['repozo-full-gzip']).toFixed(4);
      if (best['repozo-full-gzip']) r.vsRepozoTime = +(r.seconds / best['repozo-full-gzip']).toFixed(3);
    }
  }
  const mb = info.bytes / 1048576;
  printReport({
    about: `Data.fs: ${mb.toFixed(0)} MB, ${info.transactions} transactions, ${info.records} records, ${info.objects} objects; ${aboutRun(S)}`,
    columns: [
      ['best (s)', true, (r) => r.seconds.toFixed(3)],
      ['CPU s (user+sys)', true, (r) => r.cpuSeconds?.toFixed(2) ?? ''],
      ['MB/s', true, (r) => (r.id.startsWith('quick') ? '' : (mb / r.seconds).toFixed(0))],
      ['× md5sum', true, (r) => r.vsMd5sum.toFixed(2)],
      ['× cp', true, (r) => (r.vsCp === undefined ? '' : r.vsCp.toFixed(2))],
      ['× repozo -z time', true, (r) => (r.vsRepozoTime === undefined ? '' : r.vsRepozoTime.toFixed(2))],
      ['.fsz MB', true, (r) => (r.compressedBytes === undefined ? '' : (r.compressedBytes / 1048576).toFixed(1))],
      ['× repozo size', true, (r) => (r.vsRepozoSize === undefined ? '' : r.vsRepozoSize.toFixed(4))],
    ],
    results,
  });
  await writeResults(path.join(DATA_DIR, 'results-engine.json'), S, { data: { file: path.relative(ROOT, dataFile), ...info, quickAppended: appended }, results });
}

await main();
