/**
 * What the extension knows about the workspace: for every workspace folder, the
 * deployment the engine discovers there (with the settings as overrides) and
 * the engine's listing of its backups. Refreshed on demand, coalesced (a
 * refresh asked for while one runs is done once after it), and watched: the
 * backup folders, their parents (for folders that appear) and the storages'
 * folders, each without recursion, so a large blob tree costs no watches.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  isTempName,
  isInside,
  CACHE_FILE,
  LIVE_SCAN_FILE,
  LOCK_NAME,
  RUN_LOG,
  discoverDeployment,
  findDeployments,
  listDeployment,
  showSchedule,
  listKept,
  liveGenerations,
  parseStamp,
  toPloneBackupError,
  type Deployment,
  type DiscoverOverrides,
  type InstalledSchedule,
  type KeptState,
  type ScheduleEnv,
  type GenerationView,
  type PloneBackupError,
  type StorageView,
} from '../engine';

import { overridesFor } from './settings';
import { loadRuns, type RunsInfo } from './runs';

export interface Entry {
  folder: vscode.WorkspaceFolder;
  /** The deployment's root: the workspace folder, or a folder below it (backend/instance). */
  root: string;
  /** How a person names it: the workspace folder's name, with the path below it when nested. */
  name: string;
  dep?: Deployment;
  views?: StorageView[];
  /** Why the folder's deployment cannot be shown (a bad plone-backup.json, an unreadable folder). */
  error?: PloneBackupError;
  /** Per storage, the stamp of the backup the live Data.fs equals. */
  live?: Map<string, string>;
  /** The states restores kept beside the live files, oldest first. */
  kept?: KeptState[];
  /** The settings discovery was given (the scheduled runs get them as flags). */
  overrides?: DiscoverOverrides;
  /** Its schedules (systemd timers, crontab lines), as the engine reads them back. */
  schedules?: InstalledSchedule[];
  /** The run log: every run by cron, the CLI or the extension (runs.ts). */
  runs?: RunsInfo;
}

/** How long run log writes settle before it is read again. */
const RUNS_DEBOUNCE_MS = 200;

export type DiskChange = 'backups' | 'storage' | 'deployment';

/** Every generation of a listing, with where it is. */
export interface LocatedGeneration {
  entry: Entry;
  view: StorageView;
  gen: GenerationView;
  date: Date;
}

export function generationsOf(entries: readonly Entry[]): LocatedGeneration[] {
  const out: LocatedGeneration[] = [];
  for (const entry of entries)
    for (const view of entry.views ?? [])
      for (const g of view.groups) for (const c of g.chains) for (const gen of [c.full, ...c.incrementals]) out.push({ entry, view, gen, date: parseStamp(gen.stamp) });
  return out;
}

export class Model implements vscode.Disposable {
  private _entries: Entry[] = [];
  private loaded = false;
  private current?: Promise<void>;
  private queued?: Promise<void>;
  private readonly changed = new vscode.EventEmitter<void>();
  private readonly disk = new vscode.EventEmitter<DiskChange>();
  private readonly watchers = new Map<string, vscode.Disposable>();
  private readonly workspaceWatcher: vscode.FileSystemWatcher;
  private disposed = false;

  /** The entries changed (after a refresh). */
  readonly onDidChange = this.changed.event;
  /** Something changed on disk: backups, a storage (Data.fs), or what makes a deployment. */
  readonly onDidChangeOnDisk = this.disk.event;
  private readonly runsEmitter = new vscode.EventEmitter<void>();
  private runsTimer?: NodeJS.Timeout;
  /** The run logs were read again (a run ended); the entries' `runs` are new. */
  readonly onDidChangeRuns = this.runsEmitter.event;

  constructor(
    private readonly log: vscode.LogOutputChannel,
    /** Where schedules are looked for (schedule.ts: the real places, or a test's). */
    private readonly scheduleEnv: () => Promise<ScheduleEnv>,
  ) {
    // Files that make a folder a deployment, anywhere in the workspace (the workspace's own watcher).
    this.workspaceWatcher = vscode.workspace.createFileSystemWatcher('**/{Data.fs,plone-backup.json,zope.conf,zeo.conf,buildout.cfg}');
    const onDeployment = (uri: vscode.Uri) => this.onEvent(uri, true);
    this.workspaceWatcher.onDidCreate(onDeployment);
    this.workspaceWatcher.onDidDelete(onDeployment);
    this.workspaceWatcher.onDidChange((uri) => this.onEvent(uri, false));
  }

  get entries(): readonly Entry[] {
    return this._entries;
  }

  /** Entries with a deployment. */
  get deployments(): Entry[] {
    return this._entries.filter((e) => e.dep);
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  hasBackups(): boolean {
    return generationsOf(this._entries).length > 0;
  }

  /** Rediscovers and relists every folder; resolves when the entries are up to date. */
  refresh(): Promise<void> {
    if (!this.current) {
      this.current = this.load().finally(() => {
        this.current = undefined;
      });
      return this.current;
    }
    this.queued ??= this.current.then(() => {
      this.queued = undefined;
      return this.refresh();
    });
    return this.queued;
  }

  /** The first load, if none happened yet. */
  async ready(): Promise<void> {
    if (!this.loaded) await this.refresh();
  }

  private async load(): Promise<void> {
    const folders = vscode.workspace.workspaceFolders ?? [];
    const entries = (await Promise.all(folders.map((f) => this.loadFolder(f)))).flat();
    if (this.disposed) return;
    this._entries = entries;
    this.loaded = true;
    await this.updateWatchers();
    this.changed.fire();
  }

  /**
   * The folder's deployment; when the folder itself holds none, the ones below
   * it (a cookieplone project's backend/instance, several sites in one
   * repository), found by findDeployments; else one entry without a
   * deployment, for the welcome view.
   */
  private async loadFolder(folder: vscode.WorkspaceFolder): Promise<Entry[]> {
    const top: Entry = { folder, root: folder.uri.fsPath, name: folder.name };
    if (folder.uri.scheme !== 'file') return [top];
    const overrides = await overridesFor(folder);
    await this.discover(top, overrides);
    if (top.dep || top.error || Object.keys(overrides).some((k) => k === 'file' || k === 'blobDir' || k === 'backupRoot')) return [top];
    const below = await findDeployments(top.root);
    if (below.length === 0) return [top];
    const entries: Entry[] = [];
    for (const root of below) {
      const e: Entry = { folder, root, name: `${folder.name}/${path.relative(folder.uri.fsPath, root).split(path.sep).join('/')}` };
      // Path settings are relative to the workspace folder; below it only the others apply.
      await this.discover(e, { keep: overrides.keep, gzip: overrides.gzip, quick: overrides.quick });
      if (e.dep || e.error) entries.push(e);
    }
    return entries.length ? entries : [top];
  }

  private async discover(entry: Entry, overrides: DiscoverOverrides): Promise<void> {
    entry.overrides = overrides;
    try {
      entry.dep = await discoverDeployment(entry.root, overrides);
      // An unknown or misspelt key in buildout.cfg / plone-backup.json is never passed over in silence.
      for (const w of entry.dep.warnings) this.log.warn(`${entry.root}: ${w}`);
    } catch (e) {
      const err = toPloneBackupError(e);
      // No deployment in the folder is not an error: the welcome view says so.
      if (err.code !== 'SOURCE_MISSING' || err.path !== path.resolve(entry.root)) {
        entry.error = err;
        this.log.warn(`${entry.root}: ${err.userMessage}`);
      }
      return;
    }
    try {
      // The listing cache only inside the workspace: nothing is written outside it before the user agreed.
      entry.views = await listDeployment(entry.dep, { writeCache: (repo) => isInside(entry.folder.uri.fsPath, repo) });
      // Which backup the live database is, and what restores kept: a few reads, no walk of Data.fs.
      entry.live = await liveGenerations(entry.dep, entry.views).catch(() => undefined);
      entry.kept = await listKept(entry.dep).catch(() => undefined);
      // Its unit files and crontab lines: a few small reads and one crontab -l.
      entry.schedules = await showSchedule(entry.root, { env: await this.scheduleEnv() }).catch((e: unknown) => {
        this.log.warn(`${entry.root}: the schedule could not be read: ${toPloneBackupError(e).userMessage}`);
        return undefined;
      });
    } catch (e) {
      entry.error = toPloneBackupError(e);
      this.log.warn(`${entry.root}: listing the backups failed: ${entry.error.userMessage}`);
    }
    entry.runs = await loadRuns(entry.dep);
  }

  /** Reads every deployment's run log again (it changed: a run ended), without listing the backups again. */
  async reloadRuns(): Promise<void> {
    const entries = this._entries;
    await Promise.all(entries.filter((e) => e.dep).map(async (e) => (e.runs = await loadRuns(e.dep!))));
    if (!this.disposed && entries === this._entries) this.runsEmitter.fire();
  }

  // ------------------------------------------------------------------ watching

  /** Folders to watch (non-recursively): backup folders, their parents, the storages' folders. */
  private wantedDirs(): string[] {
    const dirs = new Set<string>();
    for (const e of this.deployments) {
      for (const s of e.dep!.storages) {
        for (const d of Object.values(s.dirs)) {
          dirs.add(d);
          dirs.add(path.dirname(d));
        }
        dirs.add(path.dirname(s.file));
      }
    }
    return [...dirs].sort();
  }

  private async updateWatchers(): Promise<void> {
    const wanted = new Set<string>();
    for (const d of this.wantedDirs()) {
      if (
        await fsp.stat(d).then(
          (s) => s.isDirectory(),
          () => false,
        )
      )
        wanted.add(d);
    }
    for (const [d, w] of this.watchers) {
      if (!wanted.has(d)) {
        w.dispose();
        this.watchers.delete(d);
      }
    }
    for (const d of wanted) {
      if (this.watchers.has(d)) continue;
      const w = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(d), '*'));
      const on = (uri: vscode.Uri) => this.onEvent(uri, false);
      this.watchers.set(d, vscode.Disposable.from(w, w.onDidCreate(on), w.onDidChange(on), w.onDidDelete(on)));
    }
  }

  /** Classifies a file event; the extension debounces what follows. */
  private onEvent(uri: vscode.Uri, deploymentFile: boolean): void {
    if (this.disposed || uri.scheme !== 'file') return;
    const p = uri.fsPath;
    const name = path.basename(p);
    // Our own bookkeeping and the engine's temp files (a rename into place follows).
    if (name === CACHE_FILE || name === LIVE_SCAN_FILE || name === LOCK_NAME || isTempName(name) || name.endsWith('.lock')) return;
    // The run log (and its rotation) beside the backups: a run ended; the backups themselves change by their own files.
    if (name.startsWith(RUN_LOG)) {
      clearTimeout(this.runsTimer);
      this.runsTimer = setTimeout(() => void this.reloadRuns().catch((e) => this.log.warn(`reading the run log failed: ${(e as Error).message}`)), RUNS_DEBOUNCE_MS);
      return;
    }
    const dir = path.dirname(p);
    for (const e of this.deployments) {
      for (const s of e.dep!.storages) {
        const backupDirs = Object.values(s.dirs);
        if (backupDirs.includes(dir) || backupDirs.includes(p)) return this.disk.fire('backups');
        if (p === s.file || p === `${s.file}.index`) return this.disk.fire('storage');
      }
    }
    if (deploymentFile) return this.disk.fire('deployment');
    if (['plone-backup.json', 'zope.conf', 'zeo.conf'].includes(name)) this.disk.fire('deployment');
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.runsTimer);
    this.runsEmitter.dispose();
    for (const w of this.watchers.values()) w.dispose();
    this.watchers.clear();
    this.workspaceWatcher.dispose();
    this.changed.dispose();
    this.disk.dispose();
  }
}
