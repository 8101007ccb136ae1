/**
 * The engine's consistency findings (checkLive / checkBackups, what
 * `plone-backup check` prints) in the Problems panel. The live part reuses one
 * LiveScanCache, so a check after a few new transactions reads only those, not
 * the whole Data.fs again; a new window continues from the scan cache beside
 * the backups (written only inside the workspace folder). The scan runs in a
 * worker thread: the extension host only verifies where it continues from.
 *
 * Checks run one at a time. Automatic ones (on open, after changes on disk,
 * debounced) compare backup pieces by size only; the commands verify md5s.
 * Automatic ones run only in a trusted workspace. Between checks, the recent
 * blob files are re-stat'ed (blobWatch.ts) and their result merged in here
 * (`setRecent`).
 *
 * Where an entry lives. Most findings are about files that do not open as
 * text: Data.fs and backup pieces are binary (a click on an entry on them
 * opened VS Code's "binary file" placeholder, and the Problems panel offers
 * Quick Fixes only for a resource whose text model is loaded, so none was
 * ever offered), a missing blob file does not exist, a generation is a
 * folder. VS Code lets a diagnostic sit on any URI, and a
 * TextDocumentContentProvider makes a read-only text document of any URI of
 * our own scheme. So such an entry is put on `plone-backup-problems:<the
 * file's path>`: the Problems panel still names the file (its name and
 * folder), a click opens a short read-only report of that file's findings
 * with the cursor on the finding (harmless: nothing to save, nothing huge
 * loaded), and with its text model loaded the Problems panel's lightbulb /
 * Ctrl+. offers the Quick Fixes (quickfix.ts); a read-only editor itself
 * offers none (microsoft/vscode#299732), which the report says. The report is
 * plain text, whatever the file's extension (Data.fs is not F#). Findings about files that are text (a .layout, a .dat, a
 * configuration file) stay on the file itself. The real path of a blob file
 * is in the entry's related information.
 *
 * The hints name the extension's commands ("Plone Backup: Back Up Now"), not
 * the CLI's, which an editor user may not have.
 */

import * as vscode from 'vscode';
import * as path from 'node:path';
import { checkBackups, checkLive, isInside, newLiveScanCache, type Finding, type LiveScanCache, type LiveScanReport, type ProgressFn } from '../engine';
import type { Entry } from './model';

export const SOURCE = 'Plone Backup';
/** The scheme of the read-only reports the entries on non-text files sit on. */
export const PROBLEMS_SCHEME = 'plone-backup-problems';

/** Files that open as text in an editor: their findings stay on them. */
const TEXT_FILE = /(^\.layout|\.(dat|json|cfg|conf|txt|ini))$/;

/** The resource a finding's entry is put on (see the header). */
export function findingUri(f: Pick<Finding, 'file' | 'code'>): vscode.Uri {
  const real = vscode.Uri.file(f.file);
  if (TEXT_FILE.test(path.basename(f.file)) && f.code !== 'LAYOUT_MISSING') return real;
  return real.with({ scheme: PROBLEMS_SCHEME });
}

const COMMAND_NAMES: Record<string, string> = {
  backup: 'Plone Backup: Back Up Now',
  fullbackup: 'Plone Backup: Full Backup',
  snapshot: 'Plone Backup: Snapshot',
  zipbackup: 'Plone Backup: Zip Backup',
  restore: 'Plone Backup: Restore…',
  check: 'Plone Backup: Check Consistency',
  verify: 'Plone Backup: Verify Backups',
  list: 'the Backups view',
};

/** What to do, in the editor's words: the extension's commands and Quick Fixes, not the CLI's. */
export function editorHint(f: Finding): string | undefined {
  switch (f.code) {
    case 'BLOB_MISSING':
      return 'Its Quick Fix (Ctrl+. on the entry in the Problems panel) restores it from a backup of this very state that holds it (only missing blob files are added), or use "Plone Backup: Restore…".';
    case 'NO_BACKUP':
      return 'Run "Plone Backup: Back Up Now" (Quick Fix), and back up regularly (cron).';
    case 'PIECE_WITHOUT_BLOBS':
      return 'Run "Plone Backup: Back Up Now" (Quick Fix) to get a complete generation; restore dates that have one.';
    case 'GENERATION_INCOMPLETE':
      return 'Do not rely on this generation; run "Plone Backup: Back Up Now" (Quick Fix).';
    case 'GENERATION_UNSAFE':
      return 'Restores refuse it; delete it ("Plone Backup: Delete Generation…" in the Backups view) and run "Plone Backup: Back Up Now".';
    case 'REPOSITORY_INVALID':
      return 'This piece cannot be restored or verified; make a new full backup ("Plone Backup: Full Backup", Quick Fix).';
    default:
      // Any other hint naming a CLI command: the command's name in the editor.
      return f.hint?.replace(/`plone-backup (\w+)[^`]*`/g, (m, cmd: string) => (COMMAND_NAMES[cmd] ? `"${COMMAND_NAMES[cmd]}"` : m));
  }
}

/** One published entry: the finding, its deployment and the line of its report. */
export interface PublishedFinding {
  finding: Finding;
  root: string;
  uri: vscode.Uri;
  range: vscode.Range;
}

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
  const hint = editorHint(f);
  if (hint) text += ` ${hint}`;
  return `[${f.storage}] ${text}`;
}

/** The report a `plone-backup-problems:` entry opens: one line per finding, the entry's range on it. */
function report(file: string, findings: Finding[]): { text: string; lines: number[] } {
  const out = [
    `Plone Backup: ${findings.length === 1 ? '1 problem' : `${findings.length} problems`} with ${file}`,
    `This is a read-only report, not the file. The Quick Fixes are in the Problems panel: select the entry there and press Ctrl+. (or click its lightbulb).`,
    '',
  ];
  const lines: number[] = [];
  for (const f of findings) {
    lines.push(out.length);
    out.push(`${f.severity}: ${diagnosticMessage(f)}`);
    if (f.blobFile && f.blobFile !== file) out.push(`  blob file: ${f.blobFile}`);
    out.push('');
  }
  return { text: out.join('\n'), lines };
}

export class Diagnostics implements vscode.Disposable, vscode.TextDocumentContentProvider {
  readonly collection = vscode.languages.createDiagnosticCollection('ploneBackup');
  readonly cache: LiveScanCache = newLiveScanCache();
  /** The latest live scans (at most 32, oldest first): where each continued from, what it read, on which thread. */
  readonly scans: (LiveScanReport & { root: string })[] = [];
  private readonly live = new Map<string, Finding[]>();
  private readonly backups = new Map<string, Finding[]>();
  /** Per deployment and storage: the last re-stat of the recent blob files, newer than the last live check. */
  private readonly recent = new Map<string, Map<string, { missing: Finding[]; present: Set<string> }>>();
  /** By URI: what is published there, and the report's text. */
  private published = new Map<string, { entries: PublishedFinding[]; text: string }>();
  private readonly changedDoc = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changedDoc.event;
  private readonly checkedLive = new vscode.EventEmitter<void>();
  /** A live check finished (the cache knows the newest transactions' blob files). */
  readonly onDidCheckLive = this.checkedLive.event;
  private readonly registration = vscode.workspace.registerTextDocumentContentProvider(PROBLEMS_SCHEME, this);
  // A report named after Data.fs would be taken for F#: it is plain text.
  private readonly plain = vscode.workspace.onDidOpenTextDocument((doc) => {
    if (doc.uri.scheme === PROBLEMS_SCHEME && doc.languageId !== 'plaintext') void vscode.languages.setTextDocumentLanguage(doc, 'plaintext');
  });
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
          // Off the extension host's thread (a worker), continuing from the scan
          // cache beside the backups, which is written only inside the workspace folder.
          const writeCache = (repo: string) => isInside(e.folder.uri.fsPath, repo);
          const onScan = (r: LiveScanReport) => {
            this.scans.push({ ...r, root: e.root });
            if (this.scans.length > 32) this.scans.shift();
            this.log.info(
              `live scan of ${r.storage}: ${r.scanned} bytes from byte ${r.start} (${r.from === 'start' ? 'from the start' : `continued, cache in ${r.from}`})${r.offThread ? ', in a worker thread' : ''}`,
            );
          };
          for (const s of dep.storages) live.push(...(await checkLive(s, { cache: this.cache, signal, onProgress: req.onProgress, offThread: true, writeCache, onScan })));
          this.live.set(e.root, live);
          this.recent.delete(e.root);
          all.push(...live);
        }
        if (req.backups) {
          // Never a cache written outside the workspace folder (consent is asked for writes there).
          const b = await checkBackups(dep, { quick: req.quick, signal, onProgress: req.onProgress, writeCache: (repo) => isInside(e.folder.uri.fsPath, repo) });
          this.backups.set(e.root, b);
          all.push(...b);
        }
      }
      this.publish();
      if (req.live) this.checkedLive.fire();
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

  /**
   * The re-stat of a storage's recent blob files (blobWatch.ts): missing ones
   * are added to the live findings, ones there again drop theirs, until the
   * next live check.
   */
  setRecent(root: string, storage: string, r: { missing: Finding[]; present: string[] }): void {
    const byStorage = this.recent.get(root) ?? new Map<string, { missing: Finding[]; present: Set<string> }>();
    const before = byStorage.get(storage);
    const key = (x?: { missing: Finding[]; present: Set<string> }) => (x ? `${x.missing.map((f) => f.blobFile).join('|')}#${[...x.present].sort().join('|')}` : '');
    const next = { missing: r.missing, present: new Set(r.present) };
    if (key(before) === key(next)) return;
    byStorage.set(storage, next);
    this.recent.set(root, byStorage);
    this.publish();
  }

  /** The live findings of a deployment with the recent re-stats merged in. */
  private liveOf(root: string, findings: Finding[]): Finding[] {
    const byStorage = this.recent.get(root);
    if (!byStorage) return findings;
    const out = findings.filter((f) => !(f.code === 'BLOB_MISSING' && f.blobFile && byStorage.get(f.storage)?.present.has(f.blobFile)));
    const known = new Set(out.filter((f) => f.code === 'BLOB_MISSING').map((f) => f.blobFile));
    for (const r of byStorage.values()) for (const f of r.missing) if (!known.has(f.blobFile)) out.push(f);
    return out;
  }

  /** Rebuilds the Problems entries from the latest findings of the deployments still there. */
  publish(): void {
    const roots = new Set(
      this.entries()
        .filter((e) => e.dep)
        .map((e) => e.root),
    );
    for (const m of [this.live, this.backups, this.recent]) for (const r of [...m.keys()]) if (!roots.has(r)) m.delete(r);
    const byUri = new Map<string, { uri: vscode.Uri; file: string; items: { f: Finding; root: string }[] }>();
    const add = (root: string, f: Finding) => {
      const uri = findingUri(f);
      const k = uri.toString();
      const at = byUri.get(k) ?? { uri, file: f.file, items: [] };
      at.items.push({ f, root });
      byUri.set(k, at);
    };
    for (const roots of [this.live, new Map([...this.recent.keys()].filter((r) => !this.live.has(r)).map((r) => [r, [] as Finding[]]))]) {
      for (const [root, findings] of roots) for (const f of this.liveOf(root, findings)) add(root, f);
    }
    for (const [root, findings] of this.backups) for (const f of findings) add(root, f);
    const old = this.published;
    this.published = new Map();
    this.collection.clear();
    for (const [k, { uri, file, items }] of byUri) {
      const onReport = uri.scheme === PROBLEMS_SCHEME;
      const { text, lines } = report(
        file,
        items.map((x) => x.f),
      );
      const entries: PublishedFinding[] = [];
      const diags = items.map(({ f, root }, i) => {
        const line = onReport ? lines[i]! : 0;
        const range = onReport ? new vscode.Range(line, 0, line, `${f.severity}: ${diagnosticMessage(f)}`.length) : new vscode.Range(0, 0, 0, 0);
        const d = new vscode.Diagnostic(range, diagnosticMessage(f), SEVERITY[f.severity]);
        d.source = SOURCE;
        d.code = f.code;
        if (f.blobFile) {
          const what = f.code === 'BLOB_MISSING' ? 'The missing blob file (it should be here)' : 'The blob file';
          d.relatedInformation = [new vscode.DiagnosticRelatedInformation(new vscode.Location(vscode.Uri.file(f.blobFile), new vscode.Position(0, 0)), what)];
        }
        entries.push({ finding: f, root, uri, range });
        return d;
      });
      this.published.set(k, { entries, text });
      this.collection.set(uri, diags);
    }
    // Open reports show the new findings (or that there are none left).
    for (const k of new Set([...old.keys(), ...this.published.keys()])) {
      const uri = this.published.get(k)?.entries[0]?.uri ?? old.get(k)?.entries[0]?.uri;
      if (uri?.scheme === PROBLEMS_SCHEME && old.get(k)?.text !== this.published.get(k)?.text) this.changedDoc.fire(uri);
    }
  }

  /** The report of a `plone-backup-problems:` URI (TextDocumentContentProvider). */
  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.published.get(uri.toString())?.text ?? `Plone Backup: no problems with ${uri.fsPath} (any more).\n`;
  }

  /** What is published on `uri`. */
  findingsAt(uri: vscode.Uri): readonly PublishedFinding[] {
    return this.published.get(uri.toString())?.entries ?? [];
  }

  /** The published finding behind a diagnostic (as VS Code hands it back: a copy, matched by place, code and message). */
  lookup(uri: vscode.Uri, d: vscode.Diagnostic): PublishedFinding | undefined {
    return this.findingsAt(uri).find((p) => p.range.start.line === d.range.start.line && p.finding.code === d.code && diagnosticMessage(p.finding) === d.message);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.abort.abort();
    this.collection.dispose();
    this.registration.dispose();
    this.plain.dispose();
    this.changedDoc.dispose();
    this.checkedLive.dispose();
  }
}
