/**
 * The `ploneBackup.*` settings, mapped onto the engine's DiscoverOverrides (the
 * CLI's --file, --blob-dir, --backup-dir, --keep, --gzip, --quick, --part). Empty path
 * settings and settings left at their defaults leave discovery alone.
 *
 * In an untrusted workspace the settings package.json lists as
 * restrictedConfigurations (the paths and keep) come from the user's own
 * settings only, never from the workspace's .vscode/settings.json.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { DiscoverOverrides } from '../engine';
import { CONFIG_SECTION } from './commands';

/** The settings an untrusted workspace may not set (package.json: restrictedConfigurations). */
export const RESTRICTED = ['varDir', 'file', 'blobDir', 'backupDir', 'keep', 'part'];

/** A setting's value only when the user set it somewhere (else the deployment's own applies). */
function explicit<T>(cfg: vscode.WorkspaceConfiguration, key: string): T | undefined {
  const i = cfg.inspect<T>(key);
  if (RESTRICTED.includes(key) && !vscode.workspace.isTrusted) return i?.globalValue;
  return i?.workspaceFolderValue ?? i?.workspaceValue ?? i?.globalValue;
}

function str(cfg: vscode.WorkspaceConfiguration, key: string): string | undefined {
  const v = explicit<string>(cfg, key);
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
}

async function isDir(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/**
 * The overrides for a workspace folder. `varDir` stands for
 * `file: <varDir>/filestorage/Data.fs`, `blobDir: <varDir>/blobstorage` (when
 * that folder exists) and `backupDir: <varDir>`, each unless set itself.
 */
export async function overridesFor(folder: vscode.WorkspaceFolder): Promise<DiscoverOverrides> {
  const cfg = vscode.workspace.getConfiguration(CONFIG_SECTION, folder.uri);
  const root = folder.uri.fsPath;
  const o: DiscoverOverrides = {};
  const varDir = str(cfg, 'varDir');
  const file = str(cfg, 'file');
  const blobDir = str(cfg, 'blobDir');
  const backupDir = str(cfg, 'backupDir');
  if (file) o.file = file;
  else if (varDir) o.file = path.join(varDir, 'filestorage', 'Data.fs');
  if (blobDir) o.blobDir = blobDir;
  else if (varDir && (await isDir(path.resolve(root, varDir, 'blobstorage')))) o.blobDir = path.join(varDir, 'blobstorage');
  if (backupDir) o.backupRoot = backupDir;
  else if (varDir) o.backupRoot = varDir;
  // The buildout part, when the paths are not given directly.
  const part = str(cfg, 'part');
  if (part && !file && !varDir) o.part = part;
  const keep = explicit<number>(cfg, 'keep');
  if (keep !== undefined) o.keep = keep;
  const gzip = explicit<boolean>(cfg, 'gzip');
  if (gzip !== undefined) o.gzip = gzip;
  const quick = explicit<boolean>(cfg, 'quick');
  if (quick !== undefined) o.quick = quick;
  return o;
}

export function warnAfterHours(): number {
  const v = vscode.workspace.getConfiguration(CONFIG_SECTION).get<number>('statusBar.warnAfterHours', 24);
  return typeof v === 'number' && v > 0 ? v : 24;
}

export function checkOnOpen(): boolean {
  return vscode.workspace.getConfiguration(CONFIG_SECTION).get<boolean>('checkOnOpen', true);
}
