/**
 * Quick Fixes for the Problems entries of Plone Backup (diagnostics.ts), found
 * by the entry's code (the engine's finding code) and its published finding:
 *
 * - BLOB_MISSING: "Restore the missing blob file from the backup of <time>":
 *   the newest generation whose filestorage state is the live one and which
 *   holds the file(s) (engine: findBlobSource). It runs the ordinary restore
 *   (Command.restore) to that generation with `onlyMissingBlobs`: the
 *   "unchanged" restore, which only adds missing blob files; the restore
 *   refuses if Data.fs would be replaced, and asks the usual confirmation
 *   after the trust and outside-path checks. With no such generation (the
 *   site moved on since the last backup, or no backup holds the file): only
 *   "Restore…" (the picker; its confirmation says what would be replaced).
 *   Also "Show in Backups View" for the generation that holds the file.
 * - NO_BACKUP, PIECE_WITHOUT_BLOBS, GENERATION_INCOMPLETE, GENERATION_UNSAFE:
 *   "Back Up Now"; REPOSITORY_INVALID: "Make a Full Backup Now". Those about a
 *   generation also offer "Show in Backups View".
 *
 * Every action is a command: what it does is the command's, with its checks.
 */

import * as path from 'node:path';
import * as vscode from 'vscode';
import { KINDS, findBlobSource, liveStateOf, localTime, type Finding } from '../engine';
import { Command, type GenerationArgs, type RestoreArgs } from './commands';
import { SOURCE, type Diagnostics, type PublishedFinding } from './diagnostics';
import type { Model } from './model';

const BACK_UP: Partial<Record<Finding['code'], { title: string; command: string }>> = {
  NO_BACKUP: { title: 'Back Up Now', command: Command.backup },
  PIECE_WITHOUT_BLOBS: { title: 'Back Up Now', command: Command.backup },
  GENERATION_INCOMPLETE: { title: 'Back Up Now', command: Command.backup },
  GENERATION_UNSAFE: { title: 'Back Up Now', command: Command.backup },
  REPOSITORY_INVALID: { title: 'Make a Full Backup Now', command: Command.fullBackup },
};

export class QuickFixes implements vscode.CodeActionProvider {
  static readonly metadata: vscode.CodeActionProviderMetadata = { providedCodeActionKinds: [vscode.CodeActionKind.QuickFix] };

  constructor(
    private readonly diagnostics: Diagnostics,
    private readonly model: Model,
  ) {}

  async provideCodeActions(
    doc: vscode.TextDocument,
    _range: vscode.Range | vscode.Selection,
    context: vscode.CodeActionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.CodeAction[]> {
    const ours = context.diagnostics.filter((d) => d.source === SOURCE);
    if (!ours.length) return [];
    const out: vscode.CodeAction[] = [];
    const seen = new Set<string>();
    const push = (a: vscode.CodeAction, key: string) => {
      if (seen.has(key)) return;
      seen.add(key);
      out.push(a);
    };
    const missing: { d: vscode.Diagnostic; p: PublishedFinding }[] = [];
    for (const d of ours) {
      const p = this.diagnostics.lookup(doc.uri, d);
      if (!p) continue;
      const f = p.finding;
      if (f.code === 'BLOB_MISSING') {
        missing.push({ d, p });
        continue;
      }
      const b = BACK_UP[f.code];
      if (b) push(this.action(b.title, [d], { command: b.command, title: b.title, arguments: [{ folder: p.root }] }, f.code === 'NO_BACKUP'), `${b.command}|${p.root}`);
      if (f.kind && f.stamp) push(this.reveal([d], { folder: p.root, storage: f.storage, kind: f.kind, stamp: f.stamp }), `reveal|${p.root}|${f.storage}|${f.kind}|${f.stamp}`);
    }
    // Missing blob files: one restore per deployment and storage, for all of them under the cursor.
    const groups = new Map<string, typeof missing>();
    for (const m of missing) {
      const k = `${m.p.root}\0${m.p.finding.storage}`;
      groups.set(k, [...(groups.get(k) ?? []), m]);
    }
    for (const group of groups.values()) {
      if (token.isCancellationRequested) break;
      out.push(...(await this.restoreActions(group)));
    }
    return out;
  }

  private async restoreActions(group: { d: vscode.Diagnostic; p: PublishedFinding }[]): Promise<vscode.CodeAction[]> {
    const { root, finding } = group[0]!.p;
    const diags = group.map((g) => g.d);
    const files = group.map((g) => g.p.finding.blobFile).filter((f): f is string => !!f);
    const entry = this.model.deployments.find((e) => e.root === root);
    const storage = entry?.dep!.storages.find((s) => s.name === finding.storage);
    const view = entry?.views?.find((v) => v.storage === finding.storage);
    const live = storage && liveStateOf(storage, this.diagnostics.cache);
    const source =
      view?.blobDir && live && files.length
        ? await findBlobSource(
            view,
            live,
            files.map((f) => path.relative(view.blobDir!, f)),
          )
        : undefined;
    const out: vscode.CodeAction[] = [];
    if (source) {
      const title = `Restore the missing blob ${files.length > 1 ? `files (${files.length})` : 'file'} from the ${KINDS[source.kind].noun} of ${localTime(source.stamp)}`;
      const args: RestoreArgs = { folder: root, kind: source.kind, stamp: source.stamp, onlyMissingBlobs: true, blobFiles: files };
      out.push(this.action(title, diags, { command: Command.restore, title, arguments: [args] }, true));
      out.push(this.reveal(diags, { folder: root, storage: source.storage, kind: source.kind, stamp: source.stamp }));
    } else {
      const title = `Restore… (no backup of the current state holds ${files.length > 1 ? 'these files' : 'this file'}; a restore picked there replaces the database)`;
      out.push(this.action(title, diags, { command: Command.restore, title: 'Restore…', arguments: [{ folder: root }] }, false));
    }
    return out;
  }

  private action(title: string, diagnostics: vscode.Diagnostic[], command: vscode.Command, preferred: boolean): vscode.CodeAction {
    const a = new vscode.CodeAction(title, vscode.CodeActionKind.QuickFix);
    a.diagnostics = diagnostics;
    a.command = command;
    a.isPreferred = preferred;
    return a;
  }

  private reveal(diagnostics: vscode.Diagnostic[], g: GenerationArgs): vscode.CodeAction {
    const title = 'Show in Backups View';
    return this.action(title, diagnostics, { command: Command.revealGeneration, title, arguments: [g] }, false);
  }
}
