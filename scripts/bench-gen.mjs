#!/usr/bin/env node
// The benchmarks' generated data, made once and cached in bench-data/ (git
// ignored; BENCH_DATA moves it): sites of N small blob files and big Data.fs
// files, all written with our own FileStorage writer (src/engine/zodb/fswriter.ts).
//
//   node scripts/bench-gen.mjs                  # 10 GiB Data.fs, 1 GiB Data.fs, 1,000,000 blob files
//   node scripts/bench-gen.mjs datafs:1G blobs:20000
//
// A Data.fs lives in bench-data/gen/datafs-<label>/Data.fs (with its
// Data.fs.index, as ZODB leaves it on close); it is complete when the marker
// bench-data/gen/datafs-<label>.done exists (written last, atomically, after
// an fsync): a folder without its marker is a killed generation and is made
// again. Blob sites keep the format bench-blobscale has always used:
// bench-data/scale-N/var/{filestorage/Data.fs,blobstorage}, complete when
// bench-data/scale-N/ready exists.

import { ROOT, loadEngine, log, rng } from './bench-lib.mjs';
import { promises as fsp, existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DATA = process.env.BENCH_DATA ? path.resolve(process.env.BENCH_DATA) : path.join(ROOT, 'bench-data');
export const GIB = 2 ** 30;
/** The Data.fs sizes of the scaling curves: 1 GiB with a million objects, 10 GiB with ten million (~1 KB records). */
export const DATAFS_SIZES = {
  '64M': { bytes: 64 * 2 ** 20, objects: 62_500 }, // for trying the scripts out
  '1G': { bytes: GIB, objects: 1_000_000 },
  '10G': { bytes: 10 * GIB, objects: 10_000_000 },
};

let enginePromise;
/** The engine, bundled once for the generator. */
export function engine() {
  enginePromise ??= loadEngine(path.join(ROOT, 'out', 'bench', 'engine-gen.js'));
  return enginePromise;
}

// ---------------------------------------------------------------------------
// Blob sites

const BLOBS_PER_TXN = 1000;
let blobSeq = 0;

/** A blob file's content: 0.5-1.5 KB of noise with a unique head. */
export function blobBody(rand) {
  const b = Buffer.alloc(512 + Math.floor(rand() * 1024));
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(Math.floor(rand() * 4294967296), Math.min(i, b.length - 4));
  b.write(`blob ${blobSeq++} `, 0, 'latin1');
  return b;
}

/** The site of `n` blob files: var/filestorage/Data.fs and var/blobstorage (made once). */
export async function ensureBlobSite(n) {
  const dir = path.join(DATA, `scale-${n}`);
  const file = path.join(dir, 'var', 'filestorage', 'Data.fs');
  const blobDir = path.join(dir, 'var', 'blobstorage');
  if (!existsSync(path.join(dir, 'ready'))) {
    const e = await engine();
    log(`generating a site of ${n.toLocaleString('en')} blob files in ${dir}`);
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.mkdir(blobDir, { recursive: true, mode: 0o700 });
    const w = await e.FileStorageWriter.create(file, { blobDir });
    const rand = rng(n);
    let shown = 0;
    for (let done = 0; done < n; done += BLOBS_PER_TXN) {
      const records = [];
      for (let i = 0; i < Math.min(BLOBS_PER_TXN, n - done); i++) records.push({ oid: w.newOid(), blob: blobBody(rand) });
      await w.commit({ description: `upload ${done}`, records });
      if (done - shown >= n / 10) {
        shown = done;
        log(`  ${done.toLocaleString('en')} / ${n.toLocaleString('en')} blob files`);
      }
    }
    await w.writeIndex();
    await w.close();
    await fsp.writeFile(path.join(dir, 'ready'), `${n}\n`);
  }
  return { dir, file, blobDir };
}

/** Commits `count` new blob files to a site (an upload, as a user would). */
export async function addBlobs(site, rand, count = 10) {
  const e = await engine();
  const w = await e.FileStorageWriter.open(site.file, { blobDir: site.blobDir });
  const records = [];
  for (let i = 0; i < count; i++) records.push({ oid: w.newOid(), blob: blobBody(rand) });
  await w.commit({ description: `${count} new files`, records });
  await w.close();
}

// ---------------------------------------------------------------------------
// Big Data.fs files

const RECORDS_PER_TXN = 2000;
const DATA_HDR_LEN = 42;
const CLASS_PICKLE = Buffer.from('\x80\x03cProducts.BenchContent.content\nDocument\nq\x00.', 'latin1');
const STATE_HEAD = Buffer.from('\x80\x03}q\x01X\x04\x00\x00\x00textq\x02X', 'latin1');
const STATE_TAIL = Buffer.from('q\x03s.', 'latin1');

/**
 * 64 MiB of text made of words (roughly as compressible as a Plone site's
 * Data.fs, about 3:1 with gzip); records take slices of it at random
 * offsets, so no two records within gzip's 32 KB window repeat each other.
 */
function textPool(rand) {
  const words = [];
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  for (let i = 0; i < 4000; i++) {
    let w = '';
    const len = 2 + Math.floor(rand() * rand() * 12);
    for (let j = 0; j < len; j++) w += letters[Math.floor(rand() * rand() * letters.length)];
    words.push(Buffer.from(w + ' ', 'latin1'));
  }
  const pool = Buffer.alloc(64 << 20);
  let p = 0;
  while (p < pool.length) {
    const w = words[Math.floor(rand() * rand() * words.length)];
    p += w.copy(pool, p);
  }
  return pool;
}

/** A Document pickle (class, then a state dict {'text': str}) of exactly `len` bytes. */
function docPickle(pool, rand, len, n) {
  const textLen = len - CLASS_PICKLE.length - STATE_HEAD.length - 4 - STATE_TAIL.length;
  const b = Buffer.allocUnsafe(len);
  let p = CLASS_PICKLE.copy(b, 0);
  p += STATE_HEAD.copy(b, p);
  b.writeUInt32LE(textLen, p);
  p += 4;
  const head = Buffer.from(`document ${n} `, 'latin1');
  const textStart = p;
  p += head.copy(b, p);
  const from = Math.floor(rand() * (pool.length - textLen));
  p += pool.copy(b, p, from, from + (textLen - (p - textStart)));
  STATE_TAIL.copy(b, p);
  return b;
}

/** The folder and marker of a generated Data.fs. */
export function dataFsPaths(label) {
  const dir = path.join(DATA, 'gen', `datafs-${label}`);
  return { dir, file: path.join(dir, 'Data.fs'), done: `${dir}.done` };
}

/**
 * A Data.fs of about `bytes` bytes holding `objects` objects (one record
 * each, ~bytes/objects bytes a record, RECORDS_PER_TXN records a
 * transaction), made once under bench-data/gen/datafs-<label>/. The tids
 * come from a fixed clock (2025-01-01), so every generation is the same file.
 */
export async function ensureDataFs(bytes, objects, label = sizeLabel(bytes)) {
  const { dir, file, done } = dataFsPaths(label);
  if (existsSync(done)) return { dir, file, label };
  const e = await engine();
  log(`generating a Data.fs of ${label} with ${objects.toLocaleString('en')} objects in ${dir}`);
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const rand = rng(objects);
  const pool = textPool(rand);
  const txns = Math.ceil(objects / RECORDS_PER_TXN);
  const txnOverhead = 23 + 8 + 'generated'.length;
  const perRecord = Math.floor((bytes - 4 - txns * txnOverhead) / objects);
  const pickleLen = perRecord - DATA_HDR_LEN;
  const t0 = performance.now();
  const w = await e.FileStorageWriter.create(file, { now: () => new Date('2025-01-01T00:00:00Z') });
  let shown = 0;
  for (let n = 0; n < objects; n += RECORDS_PER_TXN) {
    const records = [];
    for (let i = n; i < Math.min(objects, n + RECORDS_PER_TXN); i++) records.push({ oid: w.newOid(), data: docPickle(pool, rand, pickleLen, i) });
    await w.commit({ description: 'generated', records });
    if (n - shown >= objects / 20) {
      shown = n;
      const s = (performance.now() - t0) / 1000;
      log(`  ${label}: ${((w.end / bytes) * 100).toFixed(0)} % (${(w.end / 2 ** 20 / s).toFixed(0)} MiB/s)`);
    }
  }
  await w.writeIndex();
  await w.close();
  const fh = await fsp.open(file, 'r');
  await fh.sync();
  await fh.close();
  const tmp = `${done}.tmp`;
  await fsp.writeFile(tmp, `${objects} objects, ${(await fsp.stat(file)).size} bytes\n`);
  const th = await fsp.open(tmp, 'r');
  await th.sync();
  await th.close();
  await fsp.rename(tmp, done);
  log(`  ${label}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return { dir, file, label };
}

export function sizeLabel(bytes) {
  return bytes >= GIB ? `${Math.round(bytes / GIB)}G` : `${Math.round(bytes / 2 ** 20)}M`;
}

// As a script: generate what is asked (all, 10 GiB first, by default).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const wanted = process.argv.slice(2).length ? process.argv.slice(2) : ['datafs:10G', 'datafs:1G', 'blobs:1000000'];
  for (const w of wanted) {
    const [kind, arg] = w.split(':');
    if (kind === 'datafs') {
      const s = DATAFS_SIZES[arg];
      if (!s) throw new Error(`unknown Data.fs size ${arg} (${Object.keys(DATAFS_SIZES).join(', ')})`);
      await ensureDataFs(s.bytes, s.objects, arg);
    } else if (kind === 'blobs') await ensureBlobSite(Number(arg));
    else throw new Error(`unknown item ${w}: datafs:<size> or blobs:<count>`);
  }
}

/**
 * Appends one committed transaction of `count` new objects (~1 KB each) to a
 * Data.fs, as a site's small edit would: O(1) in the size of the file (the
 * last tid read from the last transaction's trailer and header; new oids
 * from 2^40 + the file's end, so no two appends share one). Returns the
 * file's size before, for truncateTo.
 */
export async function appendCommit(file, count = 100) {
  const e = await engine();
  const fh = await fsp.open(file, 'r+');
  try {
    const end = (await fh.stat()).size;
    const b8 = Buffer.alloc(8);
    await fh.read(b8, 0, 8, end - 8);
    const lastTpos = end - 8 - Number(b8.readBigUInt64BE(0));
    const lastTid = Buffer.alloc(8);
    await fh.read(lastTid, 0, 8, lastTpos);
    const tid = e.newTid(new Date(), lastTid);
    const rand = rng(end % 2 ** 31);
    const pool = Buffer.from('the quick brown fox jumps over the lazy dog while the catalog reindexes the folder '.repeat(20), 'latin1');
    const desc = Buffer.from('small edit', 'latin1');
    const parts = [];
    let p = end + 23 + desc.length;
    for (let i = 0; i < count; i++) {
      const oid = e.oidFromKey(2 ** 40 + end + i);
      const data = docPickle(pool, rand, 1000, end + i);
      parts.push(e.encodeDataHeader({ oid, tid, prev: 0, tloc: end, vlen: 0, plen: data.length }), data);
      p += DATA_HDR_LEN + data.length;
    }
    const tlen = p - end;
    const trailer = Buffer.alloc(8);
    trailer.writeBigUInt64BE(BigInt(tlen));
    const bytes = Buffer.concat([e.encodeTxnHeader({ tid, tlen, status: ' ', ulen: 0, dlen: desc.length, elen: 0 }), desc, ...parts, trailer]);
    await fh.write(bytes, 0, bytes.length, end);
    return end;
  } finally {
    await fh.close();
  }
}

/** Cuts a Data.fs back to `size` (what appendCommit returned first): the generated file as it was. */
export async function truncateTo(file, size) {
  await fsp.truncate(file, size);
}
