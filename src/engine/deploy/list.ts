/**
 * Every backup generation of a deployment, with what each holds: stamp,
 * full or incremental, size, transactions, the last transaction's time, user
 * and description, and its blob generation and whether that matches the
 * filestorage state (holds every blob file the state references).
 */

import * as path from 'node:path';
import { blobRelPath, listBlobFiles, notABlobFile, readLayout, type BlobLayout } from '../zodb/blobdir';
import { PloneBackupError } from '../base/errors';
import { describeRepository, type MeasureRequest, type PieceInfo } from '../repozo/pieceinfo';
import type { OperationOptions } from '../base/progress';
import { listGenerations, type Generation } from './blobgen';
import { PoolResolver, generationFiles } from './blobpool';
import { replayIncremental } from '../archive/incremental';
import { KIND_ORDER, foldersFor, type Kind } from './kinds';
import type { Deployment, StorageConfig } from './deployment';

/** `unsafe`: a generation holding a link, or whose manifest is not what we write; never used by a restore. */
export type BlobStatus = 'match' | 'missing' | 'mismatch' | 'archived' | 'none' | 'unsafe';

export interface GenerationView extends PieceInfo {
  kind: Kind;
  /** Stamp of the full backup this piece belongs to. */
  chain: string;
  blob: {
    status: BlobStatus;
    /** The generation folder, archive, or pool manifest. */
    path?: string;
    /** Where its blob files are under their relative paths (a dir generation's tree, the pool). */
    content?: string;
    files?: number;
    /** Blob files the state references that the generation lacks (first few). */
    missing?: string[];
    missingCount?: number;
    /** For `unsafe`: what is wrong, one sentence. */
    problem?: string;
  };
}

export interface GroupView {
  kind: Kind;
  repository: string;
  blobBackups?: string;
  chains: { full: GenerationView; incrementals: GenerationView[] }[];
  /** Blob generations with no filestorage piece of their stamp (old numbered ones, leftovers). */
  unmatchedGenerations: string[];
}

export interface StorageView {
  storage: string;
  file: string;
  blobDir?: string;
  groups: GroupView[];
}

export interface ListOptions extends OperationOptions {
  /**
   * Look at the files each blob generation really holds, not at the list its
   * manifest keeps (slower: a walk of every generation; check uses it).
   */
  verifyFiles?: boolean;
  /**
   * Whether the listing may keep its cache (.plone-backup-cache.json) in a
   * repository; default yes. The extension lists on open, before anyone
   * consented to writes outside the workspace.
   */
  writeCache?: (repo: string) => boolean;
  /** Pieces walked (not cached) are also measured into this (check: one read per piece). */
  measure?: MeasureRequest;
}

export async function listDeployment(dep: Deployment, opts: ListOptions = {}): Promise<StorageView[]> {
  const out: StorageView[] = [];
  for (const s of dep.storages) {
    const groups: GroupView[] = [];
    for (const kind of KIND_ORDER) groups.push(await listGroup(s, kind, opts));
    out.push({ storage: s.name, file: s.file, blobDir: s.blobDir, groups });
  }
  return out;
}

async function listGroup(s: StorageConfig, kind: Kind, opts: ListOptions): Promise<GroupView> {
  const { repo, blobs } = foldersFor(s, kind);
  const view: GroupView = { kind, repository: repo, blobBackups: s.blobDir ? blobs : undefined, chains: [], unmatchedGenerations: [] };
  let chains;
  try {
    chains = await describeRepository(repo, opts.signal, { writeCache: opts.writeCache?.(repo) ?? true, measure: opts.measure });
  } catch (e) {
    if ((e as { code?: string }).code === 'REPO_MISSING') return view;
    throw e;
  }
  const base = s.blobDir ? path.basename(s.blobDir) : undefined;
  const gens = base ? await listGenerations(blobs, base) : [];
  const pool = new PoolResolver(gens, opts.verifyFiles);
  const used = new Set<string>();
  let liveLayout: BlobLayout = 'bushy';
  if (s.blobDir) liveLayout = (await readLayout(s.blobDir)).layout;
  for (const c of chains) {
    const state = new Set<string>(); // the blob refs of the state so far, as oid/tid hex
    const views: GenerationView[] = [];
    for (const p of c.pieces) {
      for (const [oid, tid] of p.blobs) state.add(`${oid}/${tid}`);
      const v: GenerationView = { ...p, kind, chain: c.full.stamp, blob: { status: 'none' } };
      if (base) {
        // The recipe's numbered blob backups (zipbackup's blobstorage.0.tar, or
        // blob_timestamps = false): number 0 goes with the newest piece, as a
        // restore without a date takes it.
        const newest = c === chains.at(-1) && p === c.pieces.at(-1);
        const g = gens.find((x) => x.stamp === p.stamp) ?? (newest ? gens.find((x) => x.number === 0) : undefined);
        if (!g) v.blob = { status: 'missing' };
        else {
          used.add(g.name);
          v.blob = await blobStatus(g, state, liveLayout, pool, opts.verifyFiles);
        }
      }
      views.push(v);
    }
    view.chains.push({ full: views[0]!, incrementals: views.slice(1) });
  }
  view.unmatchedGenerations = gens.filter((g) => !used.has(g.name)).map((g) => g.path);
  return view;
}

async function blobStatus(g: Generation, state: Set<string>, liveLayout: BlobLayout, pool: PoolResolver, onDisk = false): Promise<GenerationView['blob']> {
  if (g.delta && !g.archives?.length) {
    return { status: 'unsafe', path: g.path, problem: `${g.name} is a delta whose full archive (with its .snar) is missing; it restores nothing` };
  }
  // An archive is read only when asked (check, verify): a listing stays cheap.
  if (g.kind !== 'dir' && g.kind !== 'pool' && !onDisk) return { status: 'archived', path: g.path };
  let layout: BlobLayout;
  let files: Map<string, number>;
  try {
    if (g.kind === 'pool') {
      // From the manifests (with onDisk, less what the pool lacks); the chain read once per listing.
      files = await pool.files(g);
      return compare(g, state, pool.layout!, files);
    }
    if (g.kind !== 'dir') return compare(g, state, liveLayout, await archiveFiles(g));
    layout = g.content ? (await readLayout(g.content)).layout : liveLayout;
    // The manifest is checked also when the files on disk are looked at (check).
    files = await generationFiles(g, layout);
    if (onDisk && g.content) {
      const walked = await listBlobFiles(g.content, layout);
      if (walked.links.length) throw notABlobFile(path.join(g.content, walked.links[0]!), 'link');
      files = new Map(walked.files.map((f) => [f.rel, f.size]));
    }
  } catch (e) {
    if (!PloneBackupError.is(e, 'MANIFEST_BAD') && !PloneBackupError.is(e, 'UNSAFE') && !PloneBackupError.is(e, 'TOO_LARGE') && !PloneBackupError.is(e, 'ARCHIVE_BAD')) throw e;
    return { status: 'unsafe', path: g.path, problem: e.message };
  }
  return compare(g, state, layout, files);
}

/** Whether a generation's files hold every blob file of the state. */
function compare(g: Generation, state: Set<string>, layout: BlobLayout, files: Map<string, number>): GenerationView['blob'] {
  const missing: string[] = [];
  for (const key of state) {
    const [oid, tid] = key.split('/');
    const rel = blobRelPath(Buffer.from(oid!, 'hex'), Buffer.from(tid!, 'hex'), layout);
    if (!files.has(rel)) missing.push(rel);
  }
  missing.sort();
  return {
    status: missing.length ? 'mismatch' : 'match',
    path: g.path,
    content: g.content,
    files: files.size,
    missing: missing.slice(0, 10),
    missingCount: missing.length,
  };
}

/**
 * The blob files an archive restores: for an incremental_blobs state, what its
 * chain replays to (deletions included); archives named with the blob folder
 * as their first component (blobstorage/0x00/...) are read without it.
 * A damaged or unsafe archive is ARCHIVE_BAD / UNSAFE.
 */
async function archiveFiles(g: Generation): Promise<Map<string, number>> {
  const replayed = await replayIncremental(g.archives?.length ? g.archives : [g.path]);
  const base = g.name.replace(/(\.delta)?\.tar(\.gz)?$/, '').replace(/\.[^.]*$/, '');
  const all = [...replayed.keys()];
  const strip = all.length > 0 && all.every((r) => r.startsWith(`${base}/`)) ? base.length + 1 : 0;
  return new Map([...replayed].filter(([r]) => r.slice(strip).endsWith('.blob')).map(([r, f]) => [r.slice(strip), f.size]));
}
