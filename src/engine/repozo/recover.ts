/**
 * repozo -R: rebuild Data.fs as of a date from a repository chain, to a file
 * (with its .index) or to a stream.
 *
 * Unlike repozo, the existing Data.fs is never deleted first: the new file is
 * written to a temp name beside it, fsynced, and only then swapped in with a
 * rename; the old one is kept (hard-linked) under a name that says so, unless
 * the caller asks not to keep it. Every piece is checked against its .dat line
 * while it is copied when the .dat has one (size always; md5 too, since the
 * bytes are hashed anyway); `withVerify` makes a missing .dat line an error.
 */

import { promises as fsp } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import * as path from 'node:path';
import { PloneBackupError, checkAbort, toPloneBackupError } from '../base/errors';
import { HashingFileWriter, PRIVATE_MODES, exists, fileLayer, fsyncDir, isRegularFile, modesOf, openRegular, tempPath } from '../base/io';
import { keepDataFs, keepStamp } from '../base/keep';
import type { OperationOptions } from '../base/progress';
import { type DatLine, type RepoFile, datLinesFor, datName, findChain, indexName, listRepository, parseDataFileName, readDat } from './repository';
import { loadPickle } from '../zodb/pickle';
import { removeDeadTemps } from '../base/lock';
import { readPiece } from '../base/streams';
import { formatStamp } from '../zodb/tid';

export interface RecoverOptions extends OperationOptions {
  repository: string;
  /** Where to write Data.fs; undefined: to `stream`. */
  output?: string;
  /** Write here when there is no output file (repozo: stdout). */
  stream?: NodeJS.WritableStream;
  /** As repozo's -D, already normalised (see normalizeDateArg); undefined: the newest backup (or as of `now()` when a clock is given). */
  date?: string;
  /** repozo -w: a piece without a .dat line is an error. */
  withVerify?: boolean;
  /** Keep the replaced Data.fs beside the new one (default true). */
  keepOld?: boolean;
  /**
   * Permission bits of the written Data.fs. Default: those of the Data.fs it
   * replaces, else of the newest piece (which has its source's), never wider.
   */
  mode?: number;
  now?: () => Date;
}

export interface RecoveredPiece {
  name: string;
  bytes: number;
  md5: string;
  /** Whether a .dat line was there to check it against. */
  checked: boolean;
}

export interface RecoverResult {
  chain: RecoveredPiece[];
  bytes: number;
  md5: string;
  output?: string;
  /** The .index copied beside the output, if the last piece had one. */
  index?: string;
  /** Where the replaced Data.fs (and its index) now are. */
  keptOld?: string[];
  /** The stamp of the last piece: the state restored. */
  stamp: string;
}

export async function recover(opts: RecoverOptions): Promise<RecoverResult> {
  try {
    return await recoverInner(opts);
  } catch (e) {
    // An OS error (a full disk, a permission) reaches callers typed, like ours.
    throw toPloneBackupError(e);
  }
}

async function recoverInner(opts: RecoverOptions): Promise<RecoverResult> {
  const log = opts.log ?? (() => undefined);
  const repo = opts.repository;
  const { files } = await listRepository(repo);
  // No date: the newest backup. (Not "now": a backup made in the same second
  // as the one before it carries the next second's stamp, a little ahead of
  // the clock.) An injected clock keeps repozo's "as of now".
  const when = opts.date ?? (opts.now ? formatStamp(opts.now()) : undefined);
  const chain = findChain(files, when);
  if (chain.length === 0) {
    throw new PloneBackupError('NO_BACKUPS', opts.date ? `There is no backup in ${repo} from before ${opts.date}.` : `There is no backup in ${repo}.`, {
      path: repo,
      hint: opts.date ? 'Pick a later date; `list` shows the backups there are.' : 'Make one first (-B).',
    });
  }
  log(`files needed to recover state as of ${when ?? 'the newest backup'}: ${chain.map((f) => f.name).join(', ')}`);
  const datFile = path.join(repo, datName(chain[0]!.stamp));
  const lines = await readDat(datFile);
  const expected = lines ? datLinesFor(chain, lines) : chain.map(() => undefined);
  if (opts.withVerify) {
    const missing = chain.find((_, i) => expected[i] === undefined);
    if (missing) {
      throw new PloneBackupError('PIECE_MISMATCH', `${missing.name} is not listed in ${path.basename(datFile)}, so it cannot be verified.`, {
        path: path.join(repo, missing.name),
        hint: 'Recover without -w, or make a new full backup.',
      });
    }
  }
  // The newest piece the .dat lists up to the date is gone: restoring the
  // pieces that are left would silently drop its transactions.
  const present = new Set(files.map((f) => f.name));
  const listed = (lines ?? []).filter((l) => when === undefined || (parseDataFileName(path.basename(l.path))?.stamp ?? '~') <= when);
  const newestListed = listed[listed.length - 1];
  const gone = newestListed && !present.has(path.basename(newestListed.path)) ? newestListed : undefined;
  if (gone) {
    throw new PloneBackupError('PIECE_MISSING', `The backup piece ${path.join(repo, path.basename(gone.path))} is missing.`, {
      path: path.join(repo, path.basename(gone.path)),
      hint: 'Restore it from another copy of the repository, or recover to an earlier date.',
    });
  }
  checkChain(repo, chain, expected);

  const total = expected.every((l) => l) ? expected[expected.length - 1]!.end : undefined;
  // Pieces without a .dat line have nothing to vouch for where they belong.
  const unlisted = total === undefined;
  const out = opts.output;
  const last = chain[chain.length - 1]!;
  const sourceIndex = path.join(repo, indexName(last.stamp));

  if (out === undefined) {
    const stream = opts.stream ?? process.stdout;
    const res = await copyChain(repo, chain, expected, total, opts, async (c) => {
      if (!stream.write(c)) await new Promise<void>((r) => stream.once('drain', () => r()));
    });
    if (unlisted) await checkIndexEnd(sourceIndex, res.bytes, repo, last);
    return { ...res, stamp: last.stamp };
  }

  // To a file: a temp file beside the output, swapped in only when complete.
  const outDir = path.dirname(path.resolve(out));
  if (!(await exists(outDir))) {
    throw new PloneBackupError('IO', `The folder ${outDir} for the recovered Data.fs does not exist.`, { path: outDir, hint: 'Create it first.' });
  }
  // What a recover to the same output killed before us left (its pid is gone).
  await removeDeadTemps(outDir, path.basename(out));
  const mode =
    opts.mode ??
    (await fsp.stat(out).then(
      (st) => st.mode,
      () =>
        fsp.stat(path.join(repo, last.name)).then(
          (st) => st.mode,
          () => PRIVATE_MODES.file,
        ),
    ));
  const writer = await HashingFileWriter.create(out, { md5: false, mode: modesOf(mode).file }); // copyChain hashes every byte already
  let indexTemp: string | undefined;
  try {
    const res = await copyChain(repo, chain, expected, total, opts, writer.write);
    await writer.finish();
    if (unlisted) await checkIndexEnd(sourceIndex, res.bytes, repo, last);
    checkAbort(opts.signal);
    // Only a regular file: a FIFO in its place would block the copy.
    if (await isRegularFile(sourceIndex)) {
      indexTemp = tempPath(`${out}.index`);
      await fileLayer.copyFile(sourceIndex, indexTemp);
      // The index maps every object of the database: as readable as Data.fs, no more.
      await fileLayer.chmod(indexTemp, modesOf(mode).file);
      const fh = await fileLayer.open(indexTemp, 'r');
      await fh.sync();
      await fh.close();
    } else log(`No index file to restore: ${sourceIndex}`);
    const keptOld = await swapIn(out, writer.temp, indexTemp, opts, log);
    return { ...res, output: out, index: indexTemp ? `${out}.index` : undefined, keptOld, stamp: last.stamp };
  } catch (e) {
    await writer.discard();
    if (indexTemp) await fileLayer.rm(indexTemp, { force: true });
    throw e;
  }
}

/**
 * The last piece's .index records the end of the state it describes; the
 * pieces must add up to it. Checked when some piece has no .dat line: they do
 * not add up when a piece the .dat cannot tell about is missing (a lost full
 * backup makes the chain run on from an older full into a newer incremental)
 * or is cut short (a killed run). An index we cannot read is not checked.
 */
async function checkIndexEnd(indexFile: string, bytes: number, repo: string, last: RepoFile): Promise<void> {
  let head: Buffer;
  try {
    const fh = await openRegular(indexFile);
    try {
      head = Buffer.alloc(32);
      head = head.subarray(0, (await fh.read(head, 0, 32, 0)).bytesRead);
    } finally {
      await fh.close();
    }
  } catch {
    return;
  }
  let pos: unknown;
  try {
    pos = loadPickle(head, 0, indexFile).value;
  } catch {
    return;
  }
  if (typeof pos === 'number' && pos !== bytes) {
    throw new PloneBackupError('CHAIN_BROKEN', `The pieces up to ${last.name} add up to ${bytes} bytes, but its index says ${pos}: a piece of the chain is missing.`, {
      path: path.join(repo, last.name),
      position: bytes,
      hint: 'Restore the missing piece from another copy of the repository, or recover to an earlier date.',
    });
  }
}

/** The chain's pieces must follow each other according to the .dat. */
function checkChain(repo: string, chain: RepoFile[], expected: (DatLine | undefined)[]): void {
  let end = 0;
  chain.forEach((f, i) => {
    const l = expected[i];
    if (!l) return;
    if (i === 0 ? l.start !== 0 : expected[i - 1] && l.start !== end) {
      throw new PloneBackupError('CHAIN_BROKEN', `${f.name} starts at byte ${l.start}, but the piece before it ends at ${end}.`, {
        path: path.join(repo, f.name),
        position: l.start,
        hint: 'The repository is inconsistent: make a new full backup (-F).',
      });
    }
    end = l.end;
  });
}

async function copyChain(
  repo: string,
  chain: RepoFile[],
  expected: (DatLine | undefined)[],
  total: number | undefined,
  opts: RecoverOptions,
  sink: (c: Buffer) => Promise<void>,
): Promise<{ chain: RecoveredPiece[]; bytes: number; md5: string }> {
  // md5 of everything: it takes over the first piece's hash state (copied when
  // that piece ends), so the first piece, most of the bytes, is hashed once.
  let all: Hash | undefined;
  let bytes = 0;
  const pieces: RecoveredPiece[] = [];
  for (let i = 0; i < chain.length; i++) {
    const f = chain[i]!;
    const file = path.join(repo, f.name);
    const want = expected[i];
    const h = createHash('md5');
    let n = 0;
    for await (const c of readPiece(file, f.gzip, opts.signal)) {
      if (want && n + c.length > want.end - want.start) {
        throw new PloneBackupError('PIECE_MISMATCH', `${file} is longer than its .dat line says (${want.end - want.start} bytes).`, {
          path: file,
          position: want.end - want.start,
          hint: 'The piece is damaged: make a new full backup (-F).',
        });
      }
      h.update(c);
      all?.update(c);
      n += c.length;
      bytes += c.length;
      await sink(c);
      opts.onProgress?.({ phase: `restoring ${f.name}`, done: bytes, total });
    }
    all ??= h.copy();
    const md5 = h.digest('hex');
    if (want) {
      if (n !== want.end - want.start) {
        throw new PloneBackupError('PIECE_MISMATCH', `${file} is ${n} bytes, should be ${want.end - want.start} bytes.`, {
          path: file,
          position: n,
          hint: 'The piece is truncated: restore it from another copy, or recover to an earlier date.',
        });
      }
      if (md5 !== want.md5) {
        throw new PloneBackupError('PIECE_MISMATCH', `${file} has checksum ${md5} instead of ${want.md5}.`, {
          path: file,
          hint: 'The piece is damaged: restore it from another copy, or recover to an earlier date.',
        });
      }
    }
    opts.log?.(`Recovered chunk ${file} : ${n} bytes, md5: ${md5}`);
    pieces.push({ name: f.name, bytes: n, md5, checked: !!want });
  }
  return { chain: pieces, bytes, md5: (all ?? createHash('md5')).digest('hex') };
}

/**
 * Puts the finished temp file in place of `out`. The old Data.fs is kept
 * aside first (base/keep.ts: hard-linked, its index moved with it), so at
 * every moment `out` is either the whole old or the whole new file, and a
 * crash in between leaves no index (ZODB rebuilds it) rather than a wrong one.
 */
async function swapIn(out: string, temp: string, indexTemp: string | undefined, opts: RecoverOptions, log: (m: string) => void): Promise<string[]> {
  const outIndex = `${out}.index`;
  let kept: string[] = [];
  if (opts.keepOld ?? true) {
    kept = await keepDataFs(out, keepStamp(opts.now));
    if (kept.length) log(`Keeping the previous ${out} as ${kept[0]}`);
  } else if (await exists(outIndex)) {
    await fileLayer.rm(outIndex, { force: true });
  }
  await fileLayer.rename(temp, out);
  if (indexTemp) await fileLayer.rename(indexTemp, outIndex);
  await fsyncDir(path.dirname(path.resolve(out)));
  return kept;
}
