/**
 * The live check of recent blob files: a blob file deleted by hand (or by a
 * script gone wrong) is noticed within a second, not at the next Data.fs
 * write, without rescanning Data.fs or walking the blob tree.
 *
 * After each live check, the engine names the blob files of the newest
 * transactions (recentBlobs: from the check's scan cache, no Data.fs read;
 * at most MAX_FILES). Their folders (at most MAX_DIRS, the newest first) are
 * watched, each without recursion; a delete or create there, the window
 * getting focus, the Backups view becoming visible, and a slow timer
 * (RESTAT_EVERY_MS, only while the window has focus) re-stat exactly those
 * files (restatRecentBlobs: one lstat each) and the result goes to the
 * Problems panel (Diagnostics.setRecent). When Data.fs changed since the
 * scan, the full live check is scheduled instead. Nothing of this runs in an
 * untrusted workspace.
 *
 * Cost: at most MAX_DIRS non-recursive watchers and MAX_FILES lstats per
 * re-stat (debounced), whatever the size of the blob tree.
 */

import * as vscode from 'vscode';
import { blobFolders, recentBlobs, restatRecentBlobs, type RecentBlobs, type StorageConfig } from '../engine';
import type { Diagnostics } from './diagnostics';
import type { Entry } from './model';

export const MAX_FILES = 256;
export const MAX_DIRS = 32;
const RESTAT_DEBOUNCE_MS = 250;
const RESTAT_EVERY_MS = 60_000;

interface Target {
  root: string;
  storage: StorageConfig;
  recent: RecentBlobs;
}

export class RecentBlobWatch implements vscode.Disposable {
  private targets: Target[] = [];
  private readonly watchers = new Map<string, vscode.Disposable>();
  private readonly subscriptions: vscode.Disposable[] = [];
  private debounce?: NodeJS.Timeout;
  private readonly interval: NodeJS.Timeout;
  private updating: Promise<void> = Promise.resolve();
  private disposed = false;

  constructor(
    private readonly diagnostics: Diagnostics,
    private readonly entries: () => readonly Entry[],
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.subscriptions.push(
      diagnostics.onDidCheckLive(() => void this.update()),
      vscode.window.onDidChangeWindowState((s) => {
        if (s.focused) this.soon();
      }),
    );
    this.interval = setInterval(() => {
      if (vscode.window.state.focused) this.soon();
    }, RESTAT_EVERY_MS);
  }

  /** The folders watched now (for the tests and the log). */
  get watchedFolders(): string[] {
    return [...this.watchers.keys()];
  }

  /** The files re-stat'ed now. */
  get watchedFiles(): string[] {
    return this.targets.flatMap((t) => t.recent.blobs.map((b) => b.path));
  }

  /** Takes the newest blob files from the last live check, and watches their folders. */
  update(): Promise<void> {
    this.updating = this.updating.then(
      () => this.load(),
      () => this.load(),
    );
    return this.updating;
  }

  private async load(): Promise<void> {
    if (this.disposed) return;
    const targets: Target[] = [];
    if (vscode.workspace.isTrusted) {
      for (const e of this.entries()) {
        for (const s of e.dep?.storages ?? []) {
          if (!s.blobDir) continue;
          try {
            const recent = await recentBlobs(s, this.diagnostics.cache, MAX_FILES);
            if (recent?.blobs.length) targets.push({ root: e.root, storage: s, recent });
          } catch (err) {
            this.log.warn(`watching the recent blob files of ${s.file} failed: ${(err as Error).message}`);
          }
        }
      }
    }
    if (this.disposed) return;
    this.targets = targets;
    const wanted = new Set(
      blobFolders(
        targets.flatMap((t) => t.recent.blobs),
        MAX_DIRS,
      ),
    );
    for (const [d, w] of this.watchers) {
      if (wanted.has(d)) continue;
      w.dispose();
      this.watchers.delete(d);
    }
    for (const d of wanted) {
      if (this.watchers.has(d)) continue;
      // Creates and deletes only: a blob file never changes in place.
      const w = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(d), '*'), false, true, false);
      this.watchers.set(
        d,
        vscode.Disposable.from(
          w,
          w.onDidDelete(() => this.soon()),
          w.onDidCreate(() => this.soon()),
        ),
      );
    }
  }

  /** A re-stat shortly (events come in bursts). */
  soon(): void {
    if (this.disposed || !vscode.workspace.isTrusted || this.targets.length === 0) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.restat().catch((e) => this.log.warn(`re-checking the recent blob files failed: ${(e as Error).message}`));
    }, RESTAT_DEBOUNCE_MS);
  }

  /** One lstat per recent blob file; the missing ones go to the Problems panel. */
  async restat(): Promise<void> {
    await this.updating;
    for (const t of this.targets) {
      const r = await restatRecentBlobs(t.storage, t.recent);
      if (this.disposed) return;
      // Data.fs moved on (or was packed): the full live check knows better.
      if (r.changed) this.diagnostics.schedule(500, { live: true });
      else this.diagnostics.setRecent(t.root, t.storage.name, r);
    }
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.debounce);
    clearInterval(this.interval);
    for (const w of this.watchers.values()) w.dispose();
    this.watchers.clear();
    for (const s of this.subscriptions) s.dispose();
  }
}
