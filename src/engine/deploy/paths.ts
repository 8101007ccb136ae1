/**
 * Where a deployment's actions may write or delete, and which of those places
 * lie outside a given folder (the workspace folder, or the CLI's --dir).
 *
 * A deployment's paths come from plone-backup.json, zope.conf or settings: a
 * folder someone else wrote can point them anywhere (another site's backups,
 * with `keep: 1`; a `blobDir` of `../../.ssh`). Backups on another disk are the
 * recommended setup, so such paths are not refused; callers ask once, naming
 * them (the extension's consent prompt), before acting on them.
 *
 * `writeTargets` and `outsideOf` are pure (no I/O); `realTargets` resolves
 * symlinks, so a link inside the folder that points out counts as outside.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { BackupDirs, Deployment } from './deployment';

export interface WriteTarget {
  /** Absolute path, as the deployment names it. */
  path: string;
  storage: string;
  /** `file`, `blobDir`, or the BackupDirs key (`backups`, `blobSnapshots`, …). */
  role: 'file' | 'blobDir' | keyof BackupDirs;
}

const DIR_KEYS: (keyof BackupDirs)[] = ['backups', 'blobBackups', 'snapshots', 'blobSnapshots', 'zips', 'blobZips'];

/**
 * Every path an action on the deployment may write or delete: each storage's
 * Data.fs and blob folder (a restore replaces them and keeps the old ones
 * beside them) and its backup folders (backups write there; retention and
 * "delete generation" delete there). Read-only actions touch none of them.
 */
export function writeTargets(dep: Deployment): WriteTarget[] {
  const out: WriteTarget[] = [];
  for (const s of dep.storages) {
    out.push({ path: s.file, storage: s.name, role: 'file' });
    if (s.blobDir) out.push({ path: s.blobDir, storage: s.name, role: 'blobDir' });
    for (const k of DIR_KEYS) out.push({ path: s.dirs[k], storage: s.name, role: k });
  }
  return out;
}

/**
 * Whether `p` lies strictly inside `root` (both absolute, already resolved).
 * The root itself counts as outside: replacing it, or keeping its old state,
 * writes beside it, in its parent.
 */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(path.resolve(root), path.resolve(p));
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/** The paths not strictly inside `root`, sorted and without duplicates. */
export function outsideOf(root: string, paths: readonly string[]): string[] {
  return [...new Set(paths.filter((p) => !isInside(root, p)).map((p) => path.resolve(p)))].sort();
}

/**
 * A path with its symlinks resolved: realpath of its longest existing prefix,
 * with the rest (not there yet) appended. A dangling link stays as it is
 * (whatever it names would be written through it).
 */
export async function resolveReal(p: string, realpath: (p: string) => Promise<string> = (x) => fsp.realpath(x)): Promise<string> {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(await realpath(cur), ...rest);
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return abs;
      rest.unshift(path.basename(cur));
      cur = parent;
    }
  }
}

/**
 * The deployment's write targets that lie outside `root`, symlinks resolved on
 * both sides (a link inside the folder that points out counts as outside);
 * sorted, as they resolve. Empty: everything it writes is inside.
 */
export async function outsideTargets(root: string, dep: Deployment, realpath?: (p: string) => Promise<string>): Promise<string[]> {
  const realRoot = await resolveReal(root, realpath);
  const real = await Promise.all(writeTargets(dep).map((t) => resolveReal(t.path, realpath)));
  return outsideOf(realRoot, real);
}
