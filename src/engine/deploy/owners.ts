/**
 * Which storage wrote a chain of a repository, so that retention deletes only
 * its own backups.
 *
 * Backup folders may be anywhere (another disk is the recommended setup), so
 * a configuration can point one storage's backup folder at another site's.
 * Retention must then keep that site's chains: it deletes a chain only when it
 * can tell that this storage wrote it. Two marks tell:
 *
 *   - `.plone-backup.owners.json` in the repository, written with every full
 *     backup we make: for its stamp, the real path of the Data.fs it was made
 *     from and that Data.fs's first transaction id.
 *
 *       {"version":1,"chains":{"2026-01-03-10-00-00":{"file":"/srv/site/var/filestorage/Data.fs","first":"03f1b1c2d3e4f500"}}}
 *
 *   - for a chain without a record (repozo or collective.recipe.backup made
 *     it, or an earlier plone-backup), the first transaction id in its full
 *     piece: a FileStorage keeps its first transaction through every commit,
 *     and another database has another one. (A pack drops it when none of
 *     its records is current any more; unrecorded chains from before such a
 *     pack are then kept, and retention says so.)
 *
 * A recorded chain is ours when its file is ours, or when the first
 * transaction agrees and either the repository lies inside the site's own
 * folder (a site copied or moved with its var/ brings its backups along) or
 * the recorded file no longer exists (the site moved). A dev copy of a
 * production database shares its first transaction, so a recorded chain of a
 * production Data.fs that still exists, in a folder outside the dev site, is
 * never the dev site's to delete.
 *
 * The record is read as hostile input (bounded, regular file, no link, checked
 * shape); one that cannot be read counts as absent, which only ever keeps more.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../base/errors';
import { READ_CAPS, readFileCapped, writeFileAtomic } from '../base/io';
import { isStamp } from '../zodb/tid';
import { readPiece } from '../base/streams';
import type { RepoFile } from '../repozo/repository';

export const OWNERS_FILE = '.plone-backup.owners.json';

export interface StorageIdentity {
  /** The real path of the Data.fs. */
  file: string;
  /** Its first transaction id (hex), when it has one. */
  first?: string;
}

interface OwnersFile {
  version: 1;
  chains: Record<string, StorageIdentity>;
}

const TID_HEX = /^[0-9a-f]{16}$/;

/** The identity of the storage at `file` (its real path and first transaction). */
export async function identify(file: string): Promise<StorageIdentity> {
  const real = await fsp.realpath(file).catch(() => path.resolve(file));
  const first = await firstTid(file, false).catch(() => undefined);
  return first ? { file: real, first } : { file: real };
}

/**
 * The id of the first transaction in a FileStorage or a full backup piece:
 * the 8 bytes after the 4-byte magic. Undefined for anything else.
 */
export async function firstTid(file: string, gzip: boolean): Promise<string | undefined> {
  let head = Buffer.alloc(0);
  if (gzip) {
    try {
      for await (const c of readPiece(file, true)) {
        head = Buffer.concat([head, c.subarray(0, 12 - head.length)]);
        if (head.length >= 12) break;
      }
    } catch {
      return undefined;
    }
  } else {
    const fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
    try {
      if (!(await fh.stat()).isFile()) return undefined;
      head = Buffer.alloc(12);
      const { bytesRead } = await fh.read(head, 0, 12, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
  if (head.length < 12) return undefined;
  const magic = head.toString('latin1', 0, 4);
  if (magic !== 'FS21' && magic !== 'FS30') return undefined;
  return head.toString('hex', 4, 12);
}

/** The recorded owners of a repository's chains, by full stamp (empty when none or unreadable). */
export async function readOwners(repo: string): Promise<Map<string, StorageIdentity>> {
  const out = new Map<string, StorageIdentity>();
  let parsed: unknown;
  try {
    parsed = JSON.parse((await readFileCapped(path.join(repo, OWNERS_FILE), READ_CAPS.config, { noFollow: true })).toString('utf8'));
  } catch (e) {
    if (PloneBackupError.is(e) || e instanceof SyntaxError || (e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  const chains = (parsed as Partial<OwnersFile> | null)?.chains;
  if ((parsed as Partial<OwnersFile> | null)?.version !== 1 || typeof chains !== 'object' || chains === null) return out;
  for (const [stamp, id] of Object.entries(chains)) {
    if (!isStamp(stamp) || typeof id !== 'object' || id === null || typeof id.file !== 'string') continue;
    if (id.first !== undefined && (typeof id.first !== 'string' || !TID_HEX.test(id.first))) continue;
    out.set(stamp, id.first ? { file: id.file, first: id.first } : { file: id.file });
  }
  return out;
}

/**
 * Records that `me` wrote the chain whose full backup is `fullStamp`, and
 * forgets chains whose full piece is gone (`present`: the full stamps there are).
 */
export async function recordOwner(repo: string, fullStamp: string, me: StorageIdentity, present: Set<string>, mode: number): Promise<void> {
  const owners = await readOwners(repo);
  owners.set(fullStamp, me);
  const chains: Record<string, StorageIdentity> = {};
  for (const [stamp, id] of [...owners].sort((a, b) => (a[0] < b[0] ? -1 : 1))) if (present.has(stamp) || stamp === fullStamp) chains[stamp] = id;
  const body: OwnersFile = { version: 1, chains };
  await writeFileAtomic(path.join(repo, OWNERS_FILE), JSON.stringify(body), mode);
}

/**
 * Whether the chain starting with the full piece `full` was written from the
 * storage `me` (see the header); `atHome`: the repository lies inside the site's folder.
 */
export async function chainIsOurs(repo: string, full: RepoFile, owners: Map<string, StorageIdentity>, me: StorageIdentity, atHome: boolean): Promise<boolean> {
  const rec = owners.get(full.stamp);
  if (rec) {
    if (rec.file === me.file) return true;
    if (!me.first || rec.first !== me.first) return false;
    return (
      atHome ||
      !(await fsp.lstat(rec.file).then(
        () => true,
        () => false,
      ))
    );
  }
  if (!me.first) return false;
  return (await firstTid(path.join(repo, full.name), full.gzip).catch(() => undefined)) === me.first;
}
