/**
 * The one "busy editor" of the tests, the soak and the benchmarks, run as a
 * process of its own: `node out/test/support/writer-process.js ARGS`.
 *
 * It runs the engine's writeContinuously (zodb/sample.ts) on a SampleSite:
 * new documents and edits, file uploads and new revisions of files (the blob
 * file in place before the record), and now and then a slow commit that
 * pauses between vote and finish (the transaction is 'c' meanwhile, its blob
 * already in place; finish flips it to ' '). With --aborts it also votes
 * transactions and aborts them (tpc_abort truncates them away again), and
 * commits undo-style records (a back pointer instead of data). What this
 * file adds is the process around it: arguments, the stdin/stdout protocol
 * and packs.
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
import { SampleSite, writeContinuously, type WriteStats } from '../../src/engine/internal';

/** What the writer did: writeContinuously's figures, its packs, and where Data.fs ended. */
export interface WriterStats extends WriteStats {
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

/** The site of `a`, kept busy by writeContinuously until stdin closes; packs when asked (or every `packEveryMs`). */
async function main(a: WriterArgs): Promise<WriterStats> {
  const file = a.file ?? path.join(a.root!, 'var', 'filestorage', 'Data.fs');
  const blobDir = a.blobDir ?? (a.root ? path.join(a.root, 'var', 'blobstorage') : path.join(path.dirname(file), 'blobstorage'));
  const stop = new AbortController();
  let packRequests = 0;
  let input = '';
  process.stdin.on('data', (d) => {
    input += d;
    const lines = input.split('\n');
    input = lines.pop()!;
    for (const l of lines) if (l.trim() === 'pack') packRequests++;
  });
  process.stdin.on('end', () => stop.abort());

  const site = await SampleSite.create({ file, blobDir });
  let packs = 0;
  let removedBlobs = 0;
  let lastPack = Date.now();
  const afterCommit = async () => {
    if (packRequests === 0 && !(a.packEveryMs && Date.now() - lastPack >= a.packEveryMs)) return;
    if (packRequests > 0) packRequests--;
    lastPack = Date.now();
    const p = await site.writer.pack();
    if (a.keepGenerations) fs.renameSync(`${file}.old`, `${file}.gen${packs}`);
    packs++;
    removedBlobs += p.removedBlobs;
    process.stdout.write(`packed ${packs}\n`);
  };
  const stats = await writeContinuously(site, {
    signal: stop.signal,
    seed: a.seed,
    minPauseMs: a.minPauseMs ?? 3,
    maxPauseMs: a.maxPauseMs ?? 10,
    uploadsFirst: 3,
    onReady: () => process.stdout.write('ready\n'),
    aborts: a.aborts,
    largePages: a.largePages,
    afterCommit,
  });
  await site.close();
  return { ...stats, packs, removedBlobs, end: site.writer.end };
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
