/**
 * Consistency checks of a deployment, each finding naming the storage, the
 * file, the oid/tid where there is one, and what to do.
 *
 * Live site: blob records whose file is missing (an error: the site fails on
 * them), blob files no record references (reported), a missing or wrong
 * `.layout`, leftovers in tmp/.
 * Backups: a piece without its blob generation, a generation lacking a file
 * its filestorage state references, a repository that fails verification.
 *
 * The live scan continues where the last one ended, when the transaction
 * there is still the same: from a `LiveScanCache` in memory (the extension),
 * else from the cache file beside the backups (livescan.ts), so a large
 * Data.fs is scanned whole once, then only what was appended.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { blobRelPath, listBlobFiles, readLayout, LAYOUT_FILE, BLOB_TMP_DIR, parseBlobRelPath } from '../zodb/blobdir';
import { PloneBackupError } from '../base/errors';
import { allChains, listRepository } from '../repozo/repository';
import { verifyChain } from '../repozo/verify';
import type { PieceMeasure } from '../repozo/pieceinfo';
import { idRepr } from '../zodb/tid';
import { listDeployment } from './list';
import { foldersFor, type Kind } from './kinds';
import { liveRefs, type LiveScanOptions } from './livescan';
import type { Deployment, StorageConfig } from './deployment';

export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  severity: Severity;
  /** Stable kind of finding. */
  code:
    | 'BLOB_MISSING'
    | 'BLOB_UNREFERENCED'
    | 'LAYOUT_MISSING'
    | 'LAYOUT_WRONG'
    | 'TMP_LEFTOVERS'
    | 'FS_CORRUPT'
    | 'PIECE_WITHOUT_BLOBS'
    | 'GENERATION_INCOMPLETE'
    | 'GENERATION_UNSAFE'
    | 'BLOB_LINK'
    | 'REPOSITORY_INVALID'
    | 'NO_BACKUP';
  storage: string;
  message: string;
  /** The file the finding is about (Data.fs, a blob file, .layout, a backup piece). */
  file: string;
  oid?: string;
  tid?: string;
  hint?: string;
  /** The blob file it is about (BLOB_MISSING: where it should be; BLOB_UNREFERENCED, BLOB_LINK). */
  blobFile?: string;
  /** The backup generation it is about (PIECE_WITHOUT_BLOBS, GENERATION_INCOMPLETE, GENERATION_UNSAFE). */
  kind?: Kind;
  stamp?: string;
}

export { newLiveScanCache, type LiveScanCache, type LiveScanReport } from './livescan';

export interface CheckOptions extends LiveScanOptions {
  /** Skip the backups (only the live storages). */
  liveOnly?: boolean;
  /** Skip the live storages. */
  backupsOnly?: boolean;
  /** Check piece sizes only, not md5s. */
  quick?: boolean;
  /**
   * Whether the listing may write its cache (.plone-backup-cache.json), and
   * the live scan its own (.plone-backup.livescan), in a repository (see
   * ListOptions.writeCache); default yes.
   */
  writeCache?: (repo: string) => boolean;
}

export async function checkDeployment(dep: Deployment, opts: CheckOptions = {}): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const s of dep.storages) {
    if (!opts.backupsOnly) findings.push(...(await checkLive(s, opts)));
  }
  if (!opts.liveOnly) findings.push(...(await checkBackups(dep, opts)));
  return findings;
}

export async function checkLive(s: StorageConfig, opts: CheckOptions = {}): Promise<Finding[]> {
  const out: Finding[] = [];
  let refs: { oid: Buffer; tid: Buffer }[];
  try {
    refs = await liveRefs(s, opts);
  } catch (e) {
    if (PloneBackupError.is(e, 'FS_CORRUPT') || PloneBackupError.is(e, 'NOT_FILESTORAGE') || PloneBackupError.is(e, 'SOURCE_MISSING')) {
      out.push({ severity: 'error', code: 'FS_CORRUPT', storage: s.name, message: e.message, file: s.file, hint: e.hint });
      return out;
    }
    throw e;
  }
  if (!s.blobDir) return out;
  const { layout, marked } = await readLayout(s.blobDir);
  const layoutFile = path.join(s.blobDir, LAYOUT_FILE);
  if (!marked) {
    out.push({
      severity: 'warning',
      code: 'LAYOUT_MISSING',
      storage: s.name,
      message: `${layoutFile} is missing, so ZODB guesses the blob layout (${layout}).`,
      file: layoutFile,
      hint: `Write "${layout}" into it.`,
    });
  }
  const { files, strays, links } = await listBlobFiles(s.blobDir, layout);
  for (const rel of links) {
    out.push({
      severity: 'error',
      code: 'BLOB_LINK',
      storage: s.name,
      message: `${path.join(s.blobDir, rel)} is a symbolic link (or another non-regular entry) in the blobstorage; backups refuse to follow it.`,
      file: path.join(s.blobDir, rel),
      blobFile: path.join(s.blobDir, rel),
      hint: 'Replace it by the blob file itself (ZODB never makes links), or remove it.',
    });
  }
  const other = layout === 'bushy' ? 'lawn' : 'bushy';
  const misfits = strays.filter((r) => parseBlobRelPath(r, other));
  if (misfits.length) {
    out.push({
      severity: 'error',
      code: 'LAYOUT_WRONG',
      storage: s.name,
      message: `${s.blobDir} says its layout is ${layout}, but ${misfits.length} blob file${misfits.length > 1 ? 's are' : ' is'} laid out ${other} (e.g. ${misfits[0]}).`,
      file: marked ? layoutFile : s.blobDir,
      hint: `Fix ${LAYOUT_FILE} (write "${other}") if the whole tree is ${other}; ZODB cannot find these blobs otherwise.`,
    });
  }
  const present = new Set(files.map((f) => f.rel));
  const referenced = new Set<string>();
  for (const r of refs) {
    const rel = blobRelPath(r.oid, r.tid, layout);
    if (referenced.has(rel)) continue;
    referenced.add(rel);
    if (!present.has(rel)) out.push(blobMissing(s, r.oid, r.tid, rel));
  }
  for (const f of files) {
    if (referenced.has(f.rel)) continue;
    out.push({
      severity: 'info',
      code: 'BLOB_UNREFERENCED',
      storage: s.name,
      message: `No committed record references ${f.rel} (oid ${idRepr(f.oid)}, tid ${idRepr(f.tid)}); a pack removes it, or it belongs to a transaction being committed.`,
      file: path.join(s.blobDir, f.rel),
      oid: idRepr(f.oid),
      tid: idRepr(f.tid),
      blobFile: path.join(s.blobDir, f.rel),
    });
  }
  const tmp = path.join(s.blobDir, BLOB_TMP_DIR);
  const left = await fsp.readdir(tmp).catch(() => [] as string[]);
  const old: string[] = [];
  for (const n of left) {
    const st = await fsp.stat(path.join(tmp, n)).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > 3600_000) old.push(n);
  }
  if (old.length) {
    out.push({
      severity: 'warning',
      code: 'TMP_LEFTOVERS',
      storage: s.name,
      message: `${tmp} holds ${old.length} file${old.length > 1 ? 's' : ''} older than an hour (e.g. ${old[0]}), left by interrupted uploads.`,
      file: path.join(tmp, old[0]!),
      hint: 'Remove them while the site is stopped.',
    });
  }
  return out;
}

/** A referenced blob file that is not in the blobstorage (the live check and the editor's re-stat of recent blobs). */
export function blobMissing(s: StorageConfig, oid: Buffer, tid: Buffer, rel: string): Finding {
  const file = path.join(s.blobDir!, rel);
  return {
    severity: 'error',
    code: 'BLOB_MISSING',
    storage: s.name,
    message: `The blob of oid ${idRepr(oid)} at tid ${idRepr(tid)} is missing: ${file}. The site fails when it loads this object.`,
    file: s.file,
    oid: idRepr(oid),
    tid: idRepr(tid),
    blobFile: file,
    hint: 'Restore the file from a blob backup (`plone-backup list` shows which have it).',
  };
}

export async function checkBackups(dep: Deployment, opts: CheckOptions = {}): Promise<Finding[]> {
  const out: Finding[] = [];
  // What the generations really hold on disk, not what their manifests say.
  // A piece the listing walks is measured in the same read, so the
  // verification below does not read it again.
  const measured = new Map<string, PieceMeasure>();
  const views = await listDeployment(dep, { ...opts, verifyFiles: true, writeCache: opts.writeCache, measure: { into: measured, quick: opts.quick } });
  for (const v of views) {
    const s = dep.storages.find((x) => x.name === v.storage)!;
    const anyBackup = v.groups.some((g) => g.chains.length > 0);
    if (!anyBackup) {
      out.push({
        severity: 'warning',
        code: 'NO_BACKUP',
        storage: s.name,
        message: `${s.name} has no backup in ${foldersFor(s, 'backup').repo}.`,
        file: s.file,
        hint: 'Run `plone-backup backup`, and from cron.',
      });
      continue;
    }
    for (const g of v.groups) {
      for (const c of g.chains) {
        for (const p of [c.full, ...c.incrementals]) {
          const piece = path.join(g.repository, p.name);
          if (p.blob.status === 'missing') {
            out.push({
              severity: 'warning',
              code: 'PIECE_WITHOUT_BLOBS',
              storage: s.name,
              message: `The ${g.kind} ${p.stamp} has no blob backup with the same stamp in ${g.blobBackups}; restoring it would miss blobs.`,
              file: piece,
              kind: g.kind,
              stamp: p.stamp,
              hint: 'Run a backup now to get a complete generation; restore dates that have one.',
            });
          } else if (p.blob.status === 'unsafe') {
            out.push({
              severity: 'error',
              code: 'GENERATION_UNSAFE',
              storage: s.name,
              message: p.blob.problem ?? `The blob backup ${p.blob.path} cannot be trusted.`,
              file: p.blob.path!,
              kind: g.kind,
              stamp: p.stamp,
              hint: 'Restores refuse it; remove that generation (it was not written by plone-backup as it is) and make a new backup.',
            });
          } else if (p.blob.status === 'mismatch') {
            out.push({
              severity: 'error',
              code: 'GENERATION_INCOMPLETE',
              storage: s.name,
              message: `The blob backup ${p.blob.path} lacks ${p.blob.missingCount} blob file${p.blob.missingCount === 1 ? '' : 's'} that the filestorage state ${p.stamp} references (e.g. ${p.blob.missing![0]}).`,
              file: p.blob.path!,
              kind: g.kind,
              stamp: p.stamp,
              hint: 'Do not rely on this generation; make a new backup.',
            });
          }
        }
      }
      // Every chain against its .dat.
      const { files } = await listRepository(g.repository).catch(() => ({ files: [] as never[] }));
      for (const chain of allChains(files)) {
        try {
          const r = await verifyChain(g.repository, chain, { quick: opts.quick, signal: opts.signal, measured });
          for (const p of r.pieces.filter((x) => x.problem)) {
            out.push({
              severity: 'error',
              code: 'REPOSITORY_INVALID',
              storage: s.name,
              message: p.problem!,
              file: path.join(g.repository, p.name),
              hint: 'This piece cannot be restored; make a new full backup (`plone-backup fullbackup`).',
            });
          }
          for (const n of r.unregistered) {
            out.push({
              severity: 'warning',
              code: 'REPOSITORY_INVALID',
              storage: s.name,
              message: `${n} is not listed in ${path.basename(r.dat)}; restores will use it but nothing can verify it.`,
              file: path.join(g.repository, n),
              hint: 'Make a new full backup.',
            });
          }
        } catch (e) {
          if (!PloneBackupError.is(e)) throw e;
          out.push({ severity: 'error', code: 'REPOSITORY_INVALID', storage: s.name, message: e.message, file: e.path ?? g.repository, hint: e.hint });
        }
      }
    }
  }
  return out;
}
