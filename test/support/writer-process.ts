/**
 * The one "busy editor" of the tests, the soak and the benchmarks, run as a
 * process of its own: `node out/test/support/writer-process.js ARGS`.
 *
 * It commits to a SampleSite (from the engine's barrel) as ZODB does: new
 * documents and edits, file uploads and new revisions of files (the blob
 * file in place before the record), and now and then a slow commit that
 * pauses between vote and finish (the transaction is 'c' meanwhile, its blob
 * already in place; finish flips it to ' '). With --aborts it also votes
 * transactions and aborts them (tpc_abort truncates them away again), and
 * commits undo-style records (a back pointer instead of data).
 *
 * Protocol: "ready" on stdout once the site holds a few files; a line "pack"
 * on stdin packs the database after the next commit (Data.fs renamed to
 * Data.fs.old, the old blob revisions removed), answered with "packed <k>";
 * when stdin closes it closes the site and prints its WriterStats as JSON.
 *
 * Arguments:
 *   --root DIR          the site in the buildout layout (var/filestorage/Data.fs, var/blobstorage)
 *   --file F            or this Data.fs, with --blob-dir D (default: <folder of F>/blobstorage)
 *   --seed N            the PRNG's seed (default 1)
 *   --pack-every MS     also pack this often (default: only when asked)
 *   --keep-generations  after each pack, rename Data.fs.old to Data.fs.gen<k> (k = 0, 1, ...)
 *   --aborts            aborted votes and undo records too
 *   --large-pages       now and then a page of 50 to 300 KB (records larger than one read)
 *   --min-pause MS, --max-pause MS   the pause between two commits (default 3..10)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BLOB_PICKLE, SampleSite, objectPickle } from '../../src/engine/internal';

export interface WriterStats {
  commits: number;
  documents: number;
  /** Blob files written (uploads and new revisions). */
  blobs: number;
  /** Commits that waited between vote and finish. */
  paused: number;
  aborted: number;
  undone: number;
  packs: number;
  removedBlobs: number;
  /** The end of Data.fs once the writer closed it. */
  end: number;
}

export interface WriterArgs {
  root?: string;
  file?: string;
  blobDir?: string;
  seed?: number;
  packEveryMs?: number;
  keepGenerations?: boolean;
  aborts?: boolean;
  largePages?: boolean;
  minPauseMs?: number;
  maxPauseMs?: number;
}

/** The command line for `args` (the inverse of parseWriterArgs). */
export function writerArgv(a: WriterArgs): string[] {
  const out: string[] = [];
  if (a.root !== undefined) out.push('--root', a.root);
  if (a.file !== undefined) out.push('--file', a.file);
  if (a.blobDir !== undefined) out.push('--blob-dir', a.blobDir);
  if (a.seed !== undefined) out.push('--seed', String(a.seed));
  if (a.packEveryMs) out.push('--pack-every', String(a.packEveryMs));
  if (a.keepGenerations) out.push('--keep-generations');
  if (a.aborts) out.push('--aborts');
  if (a.largePages) out.push('--large-pages');
  if (a.minPauseMs !== undefined) out.push('--min-pause', String(a.minPauseMs));
  if (a.maxPauseMs !== undefined) out.push('--max-pause', String(a.maxPauseMs));
  return out;
}

export function parseWriterArgs(argv: string[]): WriterArgs {
  const a: WriterArgs = {};
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${argv[i - 1]} takes a value`);
      return v;
    };
    switch (argv[i]) {
      case '--root':
        a.root = value();
        break;
      case '--file':
        a.file = value();
        break;
      case '--blob-dir':
        a.blobDir = value();
        break;
      case '--seed':
        a.seed = Number(value());
        break;
      case '--pack-every':
        a.packEveryMs = Number(value());
        break;
      case '--keep-generations':
        a.keepGenerations = true;
        break;
      case '--aborts':
        a.aborts = true;
        break;
      case '--large-pages':
        a.largePages = true;
        break;
      case '--min-pause':
        a.minPauseMs = Number(value());
        break;
      case '--max-pause':
        a.maxPauseMs = Number(value());
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!a.root === !a.file) throw new Error('give --root DIR or --file F');
  return a;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(a: WriterArgs): Promise<WriterStats> {
  const file = a.file ?? path.join(a.root!, 'var', 'filestorage', 'Data.fs');
  const blobDir = a.blobDir ?? (a.root ? path.join(a.root, 'var', 'blobstorage') : path.join(path.dirname(file), 'blobstorage'));
  let seed = (a.seed ?? 1) >>> 0;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed >>> 8) % n;
  };
  const blob = (n: number, size: number) => {
    const b = Buffer.alloc(size);
    for (let i = 0; i < size; i++) b[i] = (i * 31 + n * 7) & 0xff;
    return b;
  };
  const min = a.minPauseMs ?? 3;
  const span = Math.max(1, (a.maxPauseMs ?? 10) - min);

  let stop = false;
  let packRequests = 0;
  let input = '';
  process.stdin.on('data', (d) => {
    input += d;
    const lines = input.split('\n');
    input = lines.pop()!;
    for (const l of lines) if (l.trim() === 'pack') packRequests++;
  });
  process.stdin.on('end', () => (stop = true));

  const site = await SampleSite.create({ file, blobDir });
  const w = site.writer;
  const s: WriterStats = { commits: 0, documents: 0, blobs: 0, paused: 0, aborted: 0, undone: 0, packs: 0, removedBlobs: 0, end: 0 };
  const files: Buffer[] = [];
  const docs: Buffer[] = [];
  for (let i = 0; i < 3; i++) {
    files.push(await site.uploadFile(`f${i}`, blob(i, 1500)));
    s.commits++;
    s.blobs++;
  }
  process.stdout.write('ready\n');
  let lastPack = Date.now();
  for (let n = 1; !stop; n++) {
    const r = rand(20);
    if (r < 7 || (r >= 15 && docs.length === 0)) {
      const body = a.largePages && rand(30) === 0 ? 'text '.repeat(10_000 + rand(50_000)) : 'text '.repeat(20 + rand(100));
      docs.push(await site.addDocument(`doc ${n}`, body));
      s.documents++;
    } else if (r < 9) {
      files.push(await site.uploadFile(`new ${n}`, blob(n, 500 + rand(6000))));
      s.blobs++;
    } else if (r < 13) {
      await site.uploadFile(`again ${n}`, blob(n, 500 + rand(6000)), files[rand(files.length)]);
      s.blobs++;
    } else if (r < 15) {
      // vote (status 'c', the blob already in place), a pause, then finish (status ' ')
      const oid = files[rand(files.length)];
      await w.vote({ user: '/ slow', description: `slow upload ${n}`, records: [{ oid, data: BLOB_PICKLE, blob: blob(n, 2000) }] });
      await sleep(1 + rand(10));
      await w.finish();
      s.paused++;
      s.blobs++;
    } else if (r < 17 || !a.aborts) {
      await site.editDocument(docs[rand(docs.length)], `doc ${n}`, 'edited '.repeat(20 + rand(200)));
    } else if (r < 19) {
      // tpc_abort after a vote: the 'c' transaction is cut off the file again
      const oid = docs[rand(docs.length)];
      await w.vote({
        user: '/ editor',
        description: `aborted ${n}`,
        records: [{ oid, data: objectPickle('plone.sample', 'Document', { title: `aborted ${n}`, text: 'x'.repeat(rand(5000)) }) }],
      });
      await sleep(rand(5));
      await w.abort();
      s.aborted++;
      continue;
    } else {
      // an undo-style record: a back pointer to the document's current data
      const oid = docs[rand(docs.length)];
      await w.commit({ user: '/ editor', description: `undo ${n}`, records: [{ oid, backpointer: w.index.get(oid)! }] });
      s.undone++;
    }
    s.commits++;
    if (packRequests > 0 || (a.packEveryMs && Date.now() - lastPack >= a.packEveryMs)) {
      if (packRequests > 0) packRequests--;
      lastPack = Date.now();
      const p = await w.pack();
      if (a.keepGenerations) fs.renameSync(`${file}.old`, `${file}.gen${s.packs}`);
      s.packs++;
      s.removedBlobs += p.removedBlobs;
      process.stdout.write(`packed ${s.packs}\n`);
    }
    await sleep(min + rand(span));
  }
  await site.close();
  s.end = w.end;
  return s;
}

if (require.main === module) {
  main(parseWriterArgs(process.argv.slice(2))).then(
    (s) => {
      process.stdout.write(JSON.stringify(s) + '\n');
      process.stdin.destroy();
    },
    (e: unknown) => {
      process.stderr.write(String((e as Error)?.stack ?? e) + '\n');
      process.exit(3);
    },
  );
}
