/**
 * repozo -V: every piece of the newest chain against its .dat line (size,
 * and md5 unless quick). Unlike repozo, which stops at the first problem, the
 * result lists every piece and what is wrong with it, so a user (or the
 * extension's Problems panel) sees the whole state at once.
 */

import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { PloneBackupError, toPloneBackupError } from '../base/errors';
import type { OperationOptions } from '../base/progress';
import { type RepoFile, datName, findChain, listRepository, readDat } from './repository';
import { readPiece } from '../base/streams';
import { formatStamp } from '../zodb/tid';
import type { PieceMeasure } from './pieceinfo';

export interface VerifyOptions extends OperationOptions {
  repository: string;
  /** Sizes only, no md5 (-Q). */
  quick?: boolean;
  /** Verify the chain as of this (normalised) date instead of the newest. */
  date?: string;
  now?: () => Date;
}

export interface VerifiedPiece {
  name: string;
  expectedSize: number;
  size?: number;
  expectedMd5: string;
  md5?: string;
  /** One sentence, when the piece is not right. */
  problem?: string;
  code?: 'PIECE_MISSING' | 'PIECE_MISMATCH' | 'PIECE_BAD';
}

export interface VerifyResult {
  ok: boolean;
  dat: string;
  pieces: VerifiedPiece[];
  /** Data files of the chain that the .dat does not list. */
  unregistered: string[];
}

export async function verify(opts: VerifyOptions): Promise<VerifyResult> {
  try {
    return await verifyInner(opts);
  } catch (e) {
    // An OS error (a permission, an I/O error) reaches callers typed, like ours.
    throw toPloneBackupError(e);
  }
}

async function verifyInner(opts: VerifyOptions): Promise<VerifyResult> {
  const repo = opts.repository;
  const { files } = await listRepository(repo);
  // No date: the newest chain (see recover: stamps can be a little ahead of the clock).
  const when = opts.date ?? (opts.now ? formatStamp(opts.now()) : undefined);
  const chain = findChain(files, when);
  if (chain.length === 0) {
    throw new PloneBackupError('NO_BACKUPS', `There is no backup in ${repo} to verify.`, { path: repo, hint: 'Make one first (-B).' });
  }
  return verifyChain(repo, chain, opts);
}

export interface VerifyChainOptions extends OperationOptions {
  quick?: boolean;
  /**
   * What a read of the same pieces just measured (describeRepository's
   * `measure`, by path): such a piece is not read again (check reads each
   * piece once). A measure without md5 serves only a quick verify.
   */
  measured?: ReadonlyMap<string, PieceMeasure>;
}

export async function verifyChain(repo: string, chain: RepoFile[], opts: VerifyChainOptions = {}): Promise<VerifyResult> {
  const dat = path.join(repo, datName(chain[0]!.stamp));
  const lines = await readDat(dat);
  if (!lines) {
    throw new PloneBackupError('DAT_BAD', `${dat} is missing, so the backup cannot be verified.`, {
      path: dat,
      hint: 'Make a new full backup (-F).',
    });
  }
  const pieces: VerifiedPiece[] = [];
  let done = 0;
  const total = lines.length ? lines[lines.length - 1]!.end : 0;
  for (const l of lines) {
    const name = path.basename(l.path);
    const file = path.join(repo, name);
    const gzip = name.endsWith('fsz');
    const expectedSize = l.end - l.start;
    const p: VerifiedPiece = { name, expectedSize, expectedMd5: l.md5 };
    pieces.push(p);
    const known = opts.measured?.get(file);
    try {
      if (known?.error) throw known.error;
      if (known && (opts.quick || known.md5)) {
        p.size = known.size;
        if (!opts.quick) p.md5 = known.md5;
        opts.onProgress?.({ phase: `verifying ${name}`, done: done + known.size, total });
      } else if (!gzip && opts.quick) {
        p.size = (await fsp.stat(file)).size;
      } else {
        const h = createHash('md5');
        let n = 0;
        for await (const c of readPiece(file, gzip, opts.signal)) {
          if (!opts.quick) h.update(c);
          n += c.length;
          opts.onProgress?.({ phase: `verifying ${name}`, done: done + n, total });
        }
        p.size = n;
        if (!opts.quick) p.md5 = h.digest('hex');
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || PloneBackupError.is(e, 'PIECE_MISSING')) {
        p.problem = `${file} is missing.`;
        p.code = 'PIECE_MISSING';
        continue;
      }
      if (PloneBackupError.is(e, 'PIECE_BAD')) {
        p.problem = e.message;
        p.code = 'PIECE_BAD';
        continue;
      }
      throw e;
    }
    done += expectedSize;
    const unc = gzip ? ' (when uncompressed)' : '';
    if (p.size !== expectedSize) {
      p.problem = `${file} is ${p.size} bytes${unc}, should be ${expectedSize} bytes.`;
      p.code = 'PIECE_MISMATCH';
    } else if (!opts.quick && p.md5 !== l.md5) {
      p.problem = `${file} has checksum ${p.md5}${unc} instead of ${l.md5}.`;
      p.code = 'PIECE_MISMATCH';
    }
  }
  const listed = new Set(pieces.map((p) => p.name));
  const unregistered = chain.filter((f) => !listed.has(f.name)).map((f) => f.name);
  return { ok: pieces.every((p) => !p.problem) && unregistered.length === 0, dat, pieces, unregistered };
}
