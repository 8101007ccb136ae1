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
}

/**
 * Keeps a sample site busy until `signal` fires, as editors would: new
 * documents, file uploads, new revisions of uploaded files, and now and then
 * a slow commit that pauses between vote and finish (a reader then sees a
 * 'c' transaction whose blob file is already in place). Deterministic for a
 * given seed, apart from the timing.
 */
export async function writeContinuously(site: SampleSite, opts: { signal: AbortSignal; seed?: number; minPauseMs?: number; maxPauseMs?: number }): Promise<WriteStats> {
  let seed = (opts.seed ?? 1) >>> 0;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed >>> 8) % n;
  };
  const bytes = (n: number, size: number) => {
    const b = Buffer.alloc(size);
    for (let i = 0; i < size; i++) b[i] = (i * 31 + n * 7) & 0xff;
    return b;
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const min = opts.minPauseMs ?? 5;
  const span = Math.max(1, (opts.maxPauseMs ?? 15) - min);
  const stats: WriteStats = { commits: 0, documents: 0, uploads: 0, replaced: 0, paused: 0, blobFiles: 0 };
  const files: Buffer[] = [];
  for (let n = 1; !opts.signal.aborted; n++) {
    const r = rand(10);
    if (r < 4 || (r >= 6 && files.length === 0)) {
      await site.addDocument(`Page ${n}`, `Text of page ${n}. `.repeat(5 + rand(20)));
      stats.documents++;
    } else if (r < 6) {
      files.push(await site.uploadFile(`file-${n}.pdf`, bytes(n, 1000 + rand(8000))));
      stats.uploads++;
      stats.blobFiles++;
    } else if (r < 9) {
      await site.uploadFile(`file-${n}.pdf`, bytes(n, 1000 + rand(8000)), files[rand(files.length)]);
      stats.replaced++;
      stats.blobFiles++;
    } else {
      const oid = files[rand(files.length)]!;
      await site.writer.vote({ user: '/ admin', description: `Replaced file (slow upload ${n})`, records: [{ oid, data: BLOB_PICKLE, blob: bytes(n, 4000) }] });
      await sleep(1 + rand(10));
      await site.writer.finish();
      stats.paused++;
      stats.blobFiles++;
    }
    stats.commits++;
    await sleep(min + rand(span));
  }
  return stats;
}
