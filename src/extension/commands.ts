/**
 * The extension's command ids (the same as in package.json's contributes, which a
 * test compares), the arguments each accepts when run from code or a test
 * (`vscode.commands.executeCommand(id, args)`), and what each returns.
 *
 * Arguments may name the deployment, the generation or the date (the pickers are
 * then skipped), but the confirmations stay: `yes`, `force` and `keepOld: false`
 * are ignored (and said so in the output) unless the extension host runs with
 * PLONE_BACKUP_TEST_HOOKS=1, which only the project's in-host test runner sets
 * (safety.ts). So another extension, a command link or a keybinding cannot
 * restore over the database, restore while the site runs, drop the old state or
 * delete a generation without the user saying yes. The consent for paths
 * outside the workspace folder is never skipped by an argument.
 */

import type * as vscode from 'vscode';
import type { Kind, ScheduleEvery, ScheduleTarget, Weekday } from '../engine';

export const Command = {
  backup: 'ploneBackup.backup',
  fullBackup: 'ploneBackup.fullBackup',
  snapshot: 'ploneBackup.snapshot',
  zipBackup: 'ploneBackup.zipBackup',
  restore: 'ploneBackup.restore',
  restoreGeneration: 'ploneBackup.restoreGeneration',
  verify: 'ploneBackup.verify',
  drill: 'ploneBackup.drill',
  check: 'ploneBackup.check',
  revealInExplorer: 'ploneBackup.revealInExplorer',
  revealInOS: 'ploneBackup.revealInOS',
  copyStamp: 'ploneBackup.copyStamp',
  deleteGeneration: 'ploneBackup.deleteGeneration',
  deleteOlderChains: 'ploneBackup.deleteOlderChains',
  undoRestore: 'ploneBackup.undoRestore',
  deleteKept: 'ploneBackup.deleteKept',
  revealGeneration: 'ploneBackup.revealGeneration',
  findGeneration: 'ploneBackup.findGeneration',
  showOlder: 'ploneBackup.showOlder',
  showOlderRemote: 'ploneBackup.showOlderRemote',
  schedule: 'ploneBackup.schedule',
  refresh: 'ploneBackup.refresh',
  openSettings: 'ploneBackup.openSettings',
  showOutput: 'ploneBackup.showOutput',
  showHistory: 'ploneBackup.showHistory',
  pushNow: 'ploneBackup.pushNow',
  restoreFromRemote: 'ploneBackup.restoreFromRemote',
  setRemoteCredentials: 'ploneBackup.setRemoteCredentials',
  forgetRemoteCredentials: 'ploneBackup.forgetRemoteCredentials',
  refreshRemote: 'ploneBackup.refreshRemote',
} as const;

export type CommandId = (typeof Command)[keyof typeof Command];

export const VIEW_ID = 'ploneBackup.backups';
export const CONFIG_SECTION = 'ploneBackup';

/** Context keys the extension sets (used by `viewsWelcome` and menus). */
export const ContextKey = {
  ready: 'ploneBackup.ready',
  hasDeployment: 'ploneBackup.hasDeployment',
  hasBackups: 'ploneBackup.hasBackups',
  /** A deployment has a remote (ploneBackup.remote.url or plone-backup.json's remote). */
  hasRemote: 'ploneBackup.hasRemote',
} as const;

/** Which deployment a command acts on: the workspace folder (or deployment root) path. */
export interface TargetArgs {
  folder?: string | vscode.Uri;
}

/** Long commands: a signal or token (besides the progress notification's Cancel) that cancels the work. */
export interface RunArgs extends TargetArgs {
  signal?: AbortSignal;
  token?: vscode.CancellationToken;
}

export interface RestoreArgs extends RunArgs {
  kind?: Kind;
  /** Restore the state of this generation (a stamp), */
  stamp?: string;
  /** or the newest state before this date (yyyy-mm-dd[-hh[-mm[-ss]]], UTC). */
  date?: string;
  /** Skip the confirmation (test hooks only). */
  yes?: boolean;
  /** Restore even though the site's lock is held (test hooks only). */
  force?: boolean;
  /** Keep the replaced state aside (default true; false only under the test hooks). */
  keepOld?: boolean;
  /** Hard links to the backup (default) or copies; neither skips a check. */
  blobMode?: 'link' | 'copy';
  /**
   * Only add missing blob files (the Quick Fix of a missing blob): refused
   * unless every storage already holds the state restored (the "unchanged"
   * restore), so that Data.fs is never replaced. It narrows, never skips: the
   * confirmation and the safety checks stay.
   */
  onlyMissingBlobs?: boolean;
  /** The missing blob files it is for (named in the confirmation). */
  blobFiles?: string[];
}

/** One generation: the tree item's node, or these fields. */
export interface GenerationArgs extends TargetArgs {
  storage?: string;
  kind?: Kind;
  stamp: string;
}

export interface DeleteArgs extends GenerationArgs {
  /** Skip the confirmation (test hooks only). */
  yes?: boolean;
}

/** Delete Older Chains…: a group of a storage (the view's group node, or these). */
export interface DeleteOlderArgs extends TargetArgs {
  storage?: string;
  kind?: Kind;
  /** Skip the confirmation (test hooks only). */
  yes?: boolean;
}

/**
 * Schedule Backups…: what to do and how (each field skips its picker); the
 * confirmation stays unless `yes` under the test hooks. Resolves to the
 * schedules found (show), the change made (install) or the changes (remove).
 */
export interface ScheduleArgs extends TargetArgs {
  action?: 'install' | 'show' | 'remove';
  every?: ScheduleEvery;
  /** The weekday of the weekly full backup, or 'none'. */
  full?: Weekday | 'none';
  drill?: boolean;
  target?: ScheduleTarget;
  /** Skip the confirmation (test hooks only). */
  yes?: boolean;
}

/**
 * Restore from Remote…: the remote generation (a stamp) or a date; without
 * either, a pick. The confirmation and the safety checks are the local
 * restore's (`yes`, `force`, `keepOld: false` only under the test hooks).
 */
export interface RemoteRestoreArgs extends RunArgs {
  /** Which kind of backups (default: regular backups; snapshots and zip backups have spaces of their own on the remote). */
  kind?: Kind;
  stamp?: string;
  date?: string;
  yes?: boolean;
  force?: boolean;
  keepOld?: boolean;
  /** Fetch and restore everything, not only what the live state lacks (the CLI's --full-restore). */
  fullRestore?: boolean;
}

/**
 * Set Remote Credentials…: the values are asked for in input boxes; given
 * here they count only under the test hooks (another extension must not
 * replace the user's keys).
 */
export interface RemoteCredentialsArgs extends TargetArgs {
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Temporary credentials' session token (STS). */
  sessionToken?: string;
  passphrase?: string;
}

/** What Show Backup History resolves to: the generations and runs it draws. */
export interface HistoryResult {
  points: number;
  runs: number;
}

/** What every action command resolves to (commands never throw; failures are shown and returned). */
export type Outcome<T> =
  | { status: 'done'; value: T }
  | { status: 'cancelled' }
  /** The user said no at a confirmation or picked nothing. */
  | { status: 'declined' }
  | { status: 'failed'; code: string; message: string };
