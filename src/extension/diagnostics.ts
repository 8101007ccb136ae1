/**
 * The engine's consistency findings (checkLive / checkBackups, what
 * `plone-backup check` prints) in the Problems panel, each on the file it is
 * about. The live part reuses one LiveScanCache, so a check after a few new
 * transactions reads only those, not the whole Data.fs again.
 *
 * Checks run one at a time. Automatic ones (on open, after changes on disk,
 * debounced) compare backup pieces by size only; the commands verify md5s.
 * Automatic ones run only in a trusted workspace.
 */

import * as vscode from 'vscode';
import { checkBackups, checkLive, newLiveScanCache, type Finding, type LiveScanCache, type ProgressFn } from '../engine';
import type { Entry } from './model';

const SEVERITY: Record<Finding['severity'], vscode.DiagnosticSeverity> = {
  error: vscode.DiagnosticSeverity.Error,
  warning: vscode.DiagnosticSeverity.Warning,
  info: vscode.DiagnosticSeverity.Information,
};

export interface CheckRequest {
  live: boolean;
  backups: boolean;
  /** Piece sizes only, no md5s. */
  quick: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}

export function diagnosticMessage(f: Finding): string {
  let text = f.message;
  const ids = [f.oid && !text.includes(f.oid) ? `oid ${f.oid}` : '', f.tid && !text.includes(f.tid) ? `tid ${f.tid}` : ''].filter(Boolean);
  if (ids.length) text += ` (${ids.join(', ')})`;
  if (f.hint) text += ` ${f.hint}`;
  return `[${f.storage}] ${text}`;
}

export class Diagnostics implements vscode.Disposable {
  readonly collection = vscode.languages.createDiagnosticCollection('ploneBackup');
  readonly cache: LiveScanCache = newLiveScanCache();
  private readonly live = new Map<string, Finding[]>();
  private readonly backups = new Map<string, Finding[]>();
  private queue: Promise<unknown> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private pending = { live: false, backups: false };
  private readonly abort = new AbortController();

  constructor(
    private readonly entries: () => readonly Entry[],
    private readonly log: vscode.LogOutputChannel,
  ) {}

  /** Checks the given entries (one check at a time) and publishes the findings. */
  check(targets: readonly Entry[], req: CheckRequest): Promise<Finding[]> {
    const run = async () => {
      const all: Finding[] = [];
      const signal = req.signal ? AbortSignal.any([req.signal, this.abort.signal]) : this.abort.signal;
      for (const e of targets) {
        const dep = e.dep;
        if (!dep) continue;
        if (req.live) {
          const live: Finding[] = [];
          for (const s of dep.storages) live.push(...(await checkLive(s, { cache: this.cache, signal, onProgress: req.onProgress })));
          this.live.set(e.root, live);
          all.push(...live);
        }
        if (req.backups) {
          const b = await checkBackups(dep, { quick: req.quick, signal, onProgress: req.onProgress });
          this.backups.set(e.root, b);
          all.push(...b);
        }
      }
      this.publish();
      return all;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * An automatic check of every deployment, `delayMs` after the last call: the
   * parts asked for since the last one ran (a Data.fs write needs only the live
   * part, from where the cache left off; new backups only the backups part).
   */
  schedule(delayMs = 1000, parts: { live?: boolean; backups?: boolean } = { live: true, backups: true }): void {
    // Not in an untrusted workspace: its files are not scanned by themselves
    // (the commands still check; extension.ts schedules one when trust is granted).
    if (!vscode.workspace.isTrusted) return;
    this.pending.live ||= !!parts.live;
    this.pending.backups ||= !!parts.backups;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const { live, backups } = this.pending;
      this.pending = { live: false, backups: false };
      this.check(this.entries(), { live, backups, quick: true }).catch((e) => {
        if ((e as { code?: string }).code !== 'ABORTED') this.log.warn(`automatic check failed: ${(e as Error).message}`);
      });
    }, delayMs);
  }

  /** Rebuilds the Problems entries from the latest findings of the deployments still there. */
  publish(): void {
    const roots = new Set(this.entries().filter((e) => e.dep).map((e) => e.root));
    for (const m of [this.live, this.backups]) for (const r of [...m.keys()]) if (!roots.has(r)) m.delete(r);
    const byFile = new Map<string, vscode.Diagnostic[]>();
    for (const m of [this.live, this.backups]) {
      for (const findings of m.values()) {
        for (const f of findings) {
          const d = new vscode.Diagnostic(new vscode.Range(0, 0, 0, 0), diagnosticMessage(f), SEVERITY[f.severity]);
          d.source = 'Plone Backup';
          d.code = f.code;
          const list = byFile.get(f.file) ?? [];
          list.push(d);
          byFile.set(f.file, list);
        }
      }
    }
    this.collection.clear();
    for (const [file, diags] of byFile) this.collection.set(vscode.Uri.file(file), diags);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.abort.abort();
    this.collection.dispose();
  }
}
