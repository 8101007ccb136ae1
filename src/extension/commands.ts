/**
 * The extension's command ids (the same as in package.json's contributes, which a
 * test compares), the arguments each accepts when run from code or a test
 * (`vscode.commands.executeCommand(id, args)`: every prompt can be bypassed),
 * and what each returns.
 */

import type * as vscode from 'vscode';
import type { GroupKind, RestoreKind } from '../engine';

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
  refresh: 'ploneBackup.refresh',
  openSettings: 'ploneBackup.openSettings',
  showOutput: 'ploneBackup.showOutput',
} as const;

export type CommandId = (typeof Command)[keyof typeof Command];

export const VIEW_ID = 'ploneBackup.backups';
export const CONFIG_SECTION = 'ploneBackup';

/** Context keys the extension sets (used by `viewsWelcome` and menus). */
export const ContextKey = {
  ready: 'ploneBackup.ready',
  hasDeployment: 'ploneBackup.hasDeployment',
  hasBackups: 'ploneBackup.hasBackups',
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
  kind?: RestoreKind;
  /** Restore the state of this generation (a stamp), */
  stamp?: string;
  /** or the newest state before this date (yyyy-mm-dd[-hh[-mm[-ss]]], UTC). */
  date?: string;
  /** Skip the confirmation. */
  yes?: boolean;
  /** Restore even though the site's lock is held. */
  force?: boolean;
  /** Keep the replaced state aside (default true). */
  keepOld?: boolean;
  blobMode?: 'link' | 'copy';
}

/** One generation: the tree item's node, or these fields. */
export interface GenerationArgs extends TargetArgs {
  storage?: string;
  kind?: GroupKind;
  stamp: string;
}

export interface DeleteArgs extends GenerationArgs {
  /** Skip the confirmation. */
  yes?: boolean;
}

/** What every action command resolves to (commands never throw; failures are shown and returned). */
export type Outcome<T> =
  | { status: 'done'; value: T }
  | { status: 'cancelled' }
  /** The user said no at a confirmation or picked nothing. */
  | { status: 'declined' }
  | { status: 'failed'; code: string; message: string };
