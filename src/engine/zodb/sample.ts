/**
 * A small sample site written with the FileStorage writer: a root, a site
 * folder, documents and file uploads with blobs. Used by the demo, the tests,
 * the benchmarks and the extension's tests. The pickles look like ZODB's
 * (class reference, then a state dict) but name sample classes.
 */

import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { FileStorageWriter, BLOB_PICKLE, type WriterOptions } from './fswriter';
import type { BlobLayout } from './blobdir';

export function classPickle(module: string, name: string): Buffer {
  return Buffer.from(`\x80\x03c${module}\n${name}\nq\x00.`, 'latin1');
}

function pickleStr(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const h = Buffer.alloc(5);
  h[0] = 0x58; // BINUNICODE
  h.writeUInt32LE(b.length, 1);
  return Buffer.concat([h, b]);
}

export function statePickle(state: Record<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.from([0x80, 0x03, 0x7d, 0x71, 0x01, 0x28])]; // PROTO 3, EMPTY_DICT, BINPUT 1, MARK
  for (const [k, v] of Object.entries(state)) parts.push(pickleStr(k), pickleStr(v));
  parts.push(Buffer.from([0x75, 0x2e])); // SETITEMS, STOP
  return Buffer.concat(parts);
}

export function objectPickle(module: string, name: string, state: Record<string, string>): Buffer {
  return Buffer.concat([classPickle(module, name), statePickle(state)]);
}

export interface SampleOptions extends WriterOptions {
  /** Folder for Data.fs; blobs go to blobDir (default: <dir>/blobstorage). */
  file: string;
  blobDir?: string;
  layout?: BlobLayout;
}

/** A running sample site: each method commits one transaction. */
export class SampleSite {
  private docs = 0;
  private constructor(
    readonly writer: FileStorageWriter,
    private readonly folderOid: Buffer,
  ) {}

  static async create(opts: SampleOptions): Promise<SampleSite> {
    await fsp.mkdir(path.dirname(opts.file), { recursive: true });
    const w = await FileStorageWriter.create(opts.file, opts);
    const root = w.newOid();
    await w.commit({
      description: 'initial database creation',
      records: [{ oid: root, data: objectPickle('persistent.mapping', 'PersistentMapping', {}) }],
    });
    const folder = w.newOid();
    await w.commit({
      user: '/ admin',
      description: 'Created site',
      records: [
        { oid: root, data: objectPickle('persistent.mapping', 'PersistentMapping', { Plone: 'site' }) },
        { oid: folder, data: objectPickle('plone.sample', 'Site', { title: 'Sample site' }) },
      ],
    });
    return new SampleSite(w, folder);
  }

  static async open(opts: SampleOptions): Promise<SampleSite> {
    const w = await FileStorageWriter.open(opts.file, opts);
    return new SampleSite(w, Buffer.from('0000000000000001', 'hex'));
  }

  async addDocument(title: string, body = 'Lorem ipsum dolor sit amet. '.repeat(8), user = '/ editor'): Promise<Buffer> {
    const oid = this.writer.newOid();
    this.docs++;
    await this.writer.commit({
      user,
      description: `Added ${title}`,
      records: [
        { oid: this.folderOid, data: objectPickle('plone.sample', 'Site', { title: 'Sample site', count: String(this.docs) }) },
        { oid, data: objectPickle('plone.sample', 'Document', { title, text: body }) },
      ],
    });
    return oid;
  }

  async editDocument(oid: Buffer, title: string, body: string, user = '/ editor'): Promise<void> {
    await this.writer.commit({ user, description: `Edited ${title}`, records: [{ oid, data: objectPickle('plone.sample', 'Document', { title, text: body }) }] });
  }

  /** Uploads (or, given an oid, replaces) a file: a blob record and its blob file. */
  async uploadFile(name: string, content: Buffer, oid?: Buffer, user = '/ admin'): Promise<Buffer> {
    const blobOid = oid ?? this.writer.newOid();
    await this.writer.commit({
      user,
      description: `${oid ? 'Replaced' : 'Uploaded'} ${name}`,
      records: [{ oid: blobOid, data: BLOB_PICKLE, blob: content }],
    });
    return blobOid;
  }

  close(opts: { writeIndex?: boolean } = {}): Promise<void> {
    return this.writer.close(opts);
  }
}

export interface WriteStats {
  commits: number;
  documents: number;
  uploads: number;
  replaced: number;
  /** Transactions that waited between vote and finish (status 'c' meanwhile). */
  paused: number;
  /** Blob files written (one per upload or replacement). */
  blobFiles: number;
  /** Transactions voted and then aborted (tpc_abort), with `aborts`. */
  aborted: number;
  /** Undo-style records committed (a back pointer instead of data), with `aborts`. */
  undone: number;
}

export interface WriteOptions {
  signal: AbortSignal;
  /** The PRNG's seed (default 1). */
  seed?: number;
  /** The pause between two commits: min..max ms (default 5..15). */
  minPauseMs?: number;
  maxPauseMs?: number;
  /** Uploads this many files first (counted), then calls `onReady`. */
  uploadsFirst?: number;
  onReady?: () => void;
  /** Also votes transactions and aborts them again, and commits undo-style records. */
  aborts?: boolean;
  /** Now and then a page of 50 to 300 KB (a record larger than one read). */
  largePages?: boolean;
  /** Called after every commit (the tests' writer process packs there). */
  afterCommit?: () => Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The bytes of blob file `n`: a pattern, so a torn or mixed-up copy shows. */
function blobBytes(n: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + n * 7) & 0xff;
  return b;
}

/**
 * Keeps a sample site busy until `signal` fires, as editors would: new
 * documents and edits, file uploads, new revisions of uploaded files, and now
 * and then a slow commit that pauses between vote and finish (a reader then
 * sees a 'c' transaction whose blob file is already in place). With `aborts`
 * also transactions voted and aborted (tpc_abort cuts them off the file
 * again) and undo-style records. Deterministic for a given seed, apart from
 * the timing. The one "busy editor" of the demo, the tests, the soak and the
 * benchmarks (test/support/writer-process.ts runs it as a process).
 */
export async function writeContinuously(site: SampleSite, opts: WriteOptions): Promise<WriteStats> {
  let seed = (opts.seed ?? 1) >>> 0;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed >>> 8) % n;
  };
  const w = site.writer;
  const min = opts.minPauseMs ?? 5;
  const span = Math.max(1, (opts.maxPauseMs ?? 15) - min);
  const stats: WriteStats = { commits: 0, documents: 0, uploads: 0, replaced: 0, paused: 0, blobFiles: 0, aborted: 0, undone: 0 };
  const files: Buffer[] = [];
  const docs: Buffer[] = [];
  for (let i = 0; i < (opts.uploadsFirst ?? 0); i++) {
    files.push(await site.uploadFile(`file-${i}.pdf`, blobBytes(i, 1500)));
    stats.commits++;
    stats.uploads++;
    stats.blobFiles++;
  }
  opts.onReady?.();
  for (let n = 1; !opts.signal.aborted; n++) {
    const r = rand(20);
    if (r < 7 || (r >= 9 && r < 15 && files.length === 0) || (r >= 15 && docs.length === 0)) {
      const body = opts.largePages && rand(30) === 0 ? 'text '.repeat(10_000 + rand(50_000)) : `Text of page ${n}. `.repeat(5 + rand(20));
      docs.push(await site.addDocument(`Page ${n}`, body));
      stats.documents++;
    } else if (r < 9) {
      files.push(await site.uploadFile(`file-${n}.pdf`, blobBytes(n, 1000 + rand(8000))));
      stats.uploads++;
      stats.blobFiles++;
    } else if (r < 13) {
      await site.uploadFile(`file-${n}.pdf`, blobBytes(n, 1000 + rand(8000)), files[rand(files.length)]);
      stats.replaced++;
      stats.blobFiles++;
    } else if (r < 15) {
      // vote (status 'c', the blob already in place), a pause, then finish (status ' ')
      const oid = files[rand(files.length)]!;
      await w.vote({ user: '/ admin', description: `Replaced file (slow upload ${n})`, records: [{ oid, data: BLOB_PICKLE, blob: blobBytes(n, 4000) }] });
      await sleep(1 + rand(10));
      await w.finish();
      stats.paused++;
      stats.blobFiles++;
    } else if (r < 17 || !opts.aborts) {
      await site.editDocument(docs[rand(docs.length)]!, `Page ${n}`, 'edited '.repeat(20 + rand(200)));
    } else if (r < 19) {
      // tpc_abort after a vote: the 'c' transaction is cut off the file again
      const oid = docs[rand(docs.length)]!;
      const records = [{ oid, data: objectPickle('plone.sample', 'Document', { title: `aborted ${n}`, text: 'x'.repeat(rand(5000)) }) }];
      await w.vote({ user: '/ editor', description: `aborted ${n}`, records });
      await sleep(rand(5));
      await w.abort();
      stats.aborted++;
      continue;
    } else {
      // an undo-style record: a back pointer to the document's current data
      const oid = docs[rand(docs.length)]!;
      await w.commit({ user: '/ editor', description: `undo ${n}`, records: [{ oid, backpointer: w.index.get(oid)! }] });
      stats.undone++;
    }
    stats.commits++;
    await opts.afterCommit?.();
    await sleep(min + rand(span));
  }
  return stats;
}
