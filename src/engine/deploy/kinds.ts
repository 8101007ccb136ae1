/**
 * The one table of kinds of backup a deployment keeps, after
 * collective.recipe.backup: regular backups (full + incrementals), snapshots
 * and zip backups, each in its own pair of folders. Everything that names a
 * kind (folders, retention, the commands that make and restore one, the words
 * a person reads) looks it up here.
 *
 * A backup *command* is not a kind: `fullbackup` makes a regular backup that
 * is full; `commandKind` says which kind a command writes.
 */

import type { DeploymentSettings, StorageConfig } from './deployment';

export type Kind = 'backup' | 'snapshot' | 'zip';

/** The commands that make backups: `backup` and `fullbackup` write the `backup` kind. */
export type BackupCommand = 'backup' | 'fullbackup' | 'snapshot' | 'zipbackup';

export interface KindInfo {
  kind: Kind;
  /** As a person reads it in a sentence: "the snapshot of 10:00". */
  noun: string;
  /** A view's group label. */
  label: string;
  /** The command that makes one, and the one that restores one. */
  makeCommand: BackupCommand;
  restoreCommand: 'restore' | 'snapshotrestore' | 'ziprestore';
  /** Which setting says how many full ones are kept. */
  keepSetting: keyof Pick<DeploymentSettings, 'keep' | 'keepSnapshots' | 'keepZips'>;
  /** Its two folders for a storage: filestorage repository and blob backups. */
  folders(s: StorageConfig): { repo: string; blobs: string };
}

export const KINDS: Readonly<Record<Kind, KindInfo>> = {
  backup: {
    kind: 'backup',
    noun: 'backup',
    label: 'Backups',
    makeCommand: 'backup',
    restoreCommand: 'restore',
    keepSetting: 'keep',
    folders: (s) => ({ repo: s.dirs.backups, blobs: s.dirs.blobBackups }),
  },
  snapshot: {
    kind: 'snapshot',
    noun: 'snapshot',
    label: 'Snapshots',
    makeCommand: 'snapshot',
    restoreCommand: 'snapshotrestore',
    keepSetting: 'keepSnapshots',
    folders: (s) => ({ repo: s.dirs.snapshots, blobs: s.dirs.blobSnapshots }),
  },
  zip: {
    kind: 'zip',
    noun: 'zip backup',
    label: 'Zip backups',
    makeCommand: 'zipbackup',
    restoreCommand: 'ziprestore',
    keepSetting: 'keepZips',
    folders: (s) => ({ repo: s.dirs.zips, blobs: s.dirs.blobZips }),
  },
};

/** Every kind, in the order views show them. */
export const KIND_ORDER: readonly Kind[] = ['backup', 'snapshot', 'zip'];

/** The kind a backup command writes. */
export function commandKind(cmd: BackupCommand): Kind {
  return cmd === 'snapshot' ? 'snapshot' : cmd === 'zipbackup' ? 'zip' : 'backup';
}

/** The kind a restore command reads. */
export function restoreCommandKind(cmd: string): Kind | undefined {
  return KIND_ORDER.find((k) => KINDS[k].restoreCommand === cmd);
}

/** The folders of a storage for a kind. */
export function foldersFor(s: StorageConfig, kind: Kind): { repo: string; blobs: string } {
  return KINDS[kind].folders(s);
}
