/**
 * What the commands do: pick the deployment and the generation (unless the
 * arguments name them), confirm what replaces or deletes something, and hand
 * the work to the engine exactly as the CLI does (backupDeployment,
 * planRestore/restoreDeployment, checkDeployment's parts, drillDeployment,
 * deleteGeneration). Every command resolves to an Outcome and never throws.
 *
 * Before anything that writes or deletes: refused in an untrusted workspace,
 * and the consent for paths outside the workspace folder (safety.ts). The
 * arguments that skip a confirmation or a safety check (`yes`, `force`,
 * `keepOld: false`) count only under the test hooks (safety.ts).
 */

import * as path from 'node:path';
import * as vscode from 'vscode';
import { format } from 'date-fns';
import {
  KINDS,
  KIND_ORDER,
  age,
  humanBytes,
  localTime,
  zoneName,
  plural,
  PloneBackupError,
  backupDeployment,
  deleteGeneration,
  drillDeployment,
  normalizeDateArg,
  planDeletion,
  olderChains,
  listKept,
  deleteKept,
  undoRestore,
  type UndoResult,
  openRestore,
  recordRun,
  runLogPath,
  startRun,
  isInside,
  toPloneBackupError,
  type RunLogOptions,
  type RunResults,
  type BackupCommand,
  type DeletionResult,
  type DrillResult,
  type Finding,
  type Kind,
  type StoragePlan,
  type StorageBackupResult,
  type RestoreSession,
  type StorageRestoreResult,
} from '../engine';
import type { DeleteArgs, DeleteOlderArgs, GenerationArgs, Outcome, RestoreArgs, RunArgs, TargetArgs } from './commands';
import { scheduleCommand } from './schedule';
import type { Diagnostics } from './diagnostics';
import { askRestoreDate } from './datePrompt';
import { generationsOf, type Entry, type LocatedGeneration, type Model } from './model';
import { BLOB_STATUS_TEXT, generationArgs, isGenerationNode, lastTxn, type Node } from './tree';
import { confirm, type OutsideConsent, type TestHooks } from './safety';
import type { ActionShell } from './remoteActions';
import type { Ui } from './ui';

const BACKUP_TITLES: Record<BackupCommand, string> = {
  backup: 'Backing up',
  fullbackup: 'Making a full backup of',
  snapshot: 'Making a snapshot of',
  zipbackup: 'Making a zip backup of',
};

const BACKUP_DONE: Record<BackupCommand, string> = {
  backup: 'Backed up',
  fullbackup: 'Made a full backup of',
  snapshot: 'Made a snapshot of',
  zipbackup: 'Made a zip backup of',
};

const declined: Outcome<never> = { status: 'declined' };

function isNode(x: unknown): x is Node {
  return typeof x === 'object' && x !== null && typeof (x as Node).type === 'string' && 'entry' in (x as object);
}

type Picked = { kind: Kind; date: string; label: string } | undefined;

interface GenerationPick extends vscode.QuickPickItem {
  located?: LocatedGeneration;
  typeDate?: boolean;
}

export class Actions {
  constructor(
    private readonly model: Model,
    private readonly diagnostics: Diagnostics,
    private readonly ui: Ui,
    private readonly extensionId: string,
    private readonly consent: OutsideConsent,
    private readonly hooks: TestHooks | undefined,
    /** Whether the Backups view is on screen (then a notification offers no [Show Backups]). */
    private readonly viewVisible: () => boolean = () => false,
    /** Shows a generation's item in the Backups view; false when the view has no such item. */
    private readonly revealNode: (g: { root: string; storage: string; kind: Kind; stamp: string }) => Promise<boolean> = async () => false,
  ) {}

  /** [Show Backups], unless the view is on screen already. */
  private showBackups(): { title: string; run: () => unknown }[] {
    return this.viewVisible() ? [] : [{ title: 'Show Backups', run: () => vscode.commands.executeCommand('ploneBackup.backups.focus') }];
  }

  // ------------------------------------------------------------------ safety

  /**
   * Whether an action that writes or deletes may go ahead on the entry: not in
   * an untrusted workspace, and only with consent for paths outside the
   * workspace folder. An outcome: stop (shown, or declined).
   */
  private async mayWrite(entry: Entry, title: string): Promise<Outcome<never> | undefined> {
    if (!vscode.workspace.isTrusted) {
      return this.ui.failed(
        title,
        new PloneBackupError('USAGE', `This workspace is not trusted: Plone Backup only lists and checks its backups here; nothing was written.`, {
          hint: 'Trust the workspace (Manage Workspace Trust) to back up, restore or delete.',
        }),
      );
    }
    if (!(await this.consent.ensure(entry.root, entry.name, entry.dep!))) return declined;
    return undefined;
  }

  /**
   * The arguments that skip a confirmation (`yes`) or a safety check (`force`,
   * `keepOld: false`): honoured only under the test hooks, else ignored (and
   * said so in the output), whoever calls the command.
   */
  private bypass(args: { yes?: unknown; force?: unknown; keepOld?: unknown } | undefined, title: string): { yes: boolean; force: boolean; keepOld?: false } {
    // keepOld: only a "false" is passed on; the engine decides the default.
    const asked = { yes: args?.yes === true, force: args?.force === true, keepOld: args?.keepOld === false ? (false as const) : undefined };
    if (this.hooks?.bypassArgs) return asked;
    const ignored = [asked.yes && 'yes', asked.force && 'force', asked.keepOld === false && 'keepOld: false'].filter(Boolean);
    if (ignored.length)
      this.ui.output.warn(`${title}: ignored ${ignored.join(', ')} in the command's arguments; only the extension's own tests may skip a confirmation or a safety check.`);
    return { yes: false, force: false };
  }

  // ------------------------------------------------------------------ targets

  private rel(entry: Entry, p: string): string {
    const r = path.relative(entry.root, p);
    return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : p;
  }

  /** The deployment a command acts on: named by the arguments, the only one, or picked. */
  private async entryFor(arg: unknown, title: string): Promise<Entry | Outcome<never>> {
    await this.model.ready();
    if (isNode(arg) && arg.entry) {
      if (arg.entry.dep) return arg.entry;
    }
    const folder = (arg as TargetArgs | undefined)?.folder;
    const deps = this.model.deployments;
    if (folder !== undefined) {
      const p = path.resolve(typeof folder === 'string' ? folder : folder.fsPath);
      const found = deps.find((e) => e.root === p || e.dep!.root === p);
      if (found) return found;
      return this.ui.failed(
        title,
        new PloneBackupError('NOT_FOUND', `No Plone deployment was found in ${p}.`, { path: p, hint: 'Open the folder holding var/filestorage/Data.fs, or set ploneBackup.file.' }),
      );
    }
    if (deps.length === 1) return deps[0]!;
    if (deps.length === 0) {
      const broken = this.model.entries.find((e) => e.error);
      if (broken) return this.ui.failed(title, broken.error);
      const err = new PloneBackupError('NOT_FOUND', 'No Plone deployment was found in the workspace.', {
        hint: 'Open the folder holding var/filestorage/Data.fs, zope.conf or plone-backup.json, or set ploneBackup.file in the settings.',
      });
      this.ui.output.error(err.userMessage);
      void vscode.window.showErrorMessage(err.userMessage, 'Open Settings').then((c) => {
        if (c) void this.openSettings();
      });
      return { status: 'failed', code: err.code, message: err.userMessage };
    }
    const pick = await vscode.window.showQuickPick(
      deps.map((e) => ({ label: e.name, description: e.root, entry: e })),
      { title, placeHolder: 'Which deployment?' },
    );
    return pick?.entry ?? declined;
  }

  private static isOutcome(x: Entry | Outcome<never>): x is Outcome<never> {
    return 'status' in x;
  }

  /**
   * How the extension's runs are recorded in the run log (the engine's
   * runlog.ts): their problems go to the Output channel. on_failure runs for
   * backups and restores, which asked the consent that covers it (mayWrite);
   * a read-only run (verify, check, drill) runs no command of the workspace.
   */
  private runLog(onFailure: boolean): RunLogOptions {
    return { log: (m) => this.ui.output.info(m), warn: (m) => this.ui.output.warn(m), via: 'extension', onFailure };
  }

  /**
   * Runs a read-only command (verify, check, drill), recorded in the run log
   * only where that writes nothing it was not allowed to: a trusted
   * workspace, and a run log inside the workspace folder.
   */
  private readOnlyRun<C extends 'verify' | 'check' | 'drill', T extends RunResults[C]>(entry: Entry, command: C, fn: () => Promise<T>): Promise<T> {
    const dep = entry.dep;
    if (!dep || !vscode.workspace.isTrusted || !isInside(entry.root, runLogPath(dep))) return fn();
    return recordRun(dep, command, fn, this.runLog(false));
  }

  private runArgs(arg: unknown): RunArgs | undefined {
    return isNode(arg) ? undefined : (arg as RunArgs | undefined);
  }

  /** Generations of a deployment as quick-pick items, newest first, grouped by kind. */
  private generationItems(entry: Entry): GenerationPick[] {
    const items: GenerationPick[] = [];
    const several = (entry.views?.length ?? 0) > 1;
    const all = generationsOf([entry]);
    for (const kind of KIND_ORDER) {
      const gens = all.filter((l) => l.gen.kind === kind).sort((a, b) => b.date.getTime() - a.date.getTime() || a.view.storage.localeCompare(b.view.storage));
      if (!gens.length) continue;
      items.push({ label: KINDS[kind].label, kind: vscode.QuickPickItemKind.Separator });
      for (const l of gens) {
        const g = l.gen;
        const desc = [age(g.stamp), g.full ? 'full' : 'incremental', humanBytes(g.end - g.start), plural(g.transactions, 'transaction')];
        if (several) desc.push(l.view.storage);
        items.push({
          label: `$(${g.blob.status === 'match' || g.blob.status === 'none' || g.blob.status === 'archived' ? 'pass' : 'warning'}) ${localTime(g.stamp)}`,
          description: desc.join(' · '),
          detail: [lastTxn(g), BLOB_STATUS_TEXT[g.blob.status]].filter(Boolean).join(' · '),
          located: l,
        });
      }
    }
    return items;
  }

  private async pickGeneration(entry: Entry, title: string): Promise<GenerationArgs | undefined> {
    const items = this.generationItems(entry);
    if (!items.length) {
      this.ui.info(`${entry.name} has no backup yet.`, { title: 'Back Up Now', run: () => this.backup('backup', { folder: entry.root }) });
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(items, {
      title,
      placeHolder: 'Type a date, a time or what was done (e.g. "Added News")',
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (!pick?.located) return undefined;
    return { folder: entry.root, storage: pick.located.view.storage, kind: pick.located.gen.kind, stamp: pick.located.gen.stamp };
  }

  /** A generation command's arguments: the tree node, the given fields, or a pick. */
  private async generationFor(arg: unknown, title: string): Promise<{ entry: Entry; g: Required<Pick<GenerationArgs, 'storage' | 'kind' | 'stamp'>> } | Outcome<never>> {
    let args: GenerationArgs | undefined = isGenerationNode(arg) ? generationArgs(arg) : (arg as GenerationArgs | undefined);
    const entry = await this.entryFor(args, title);
    if (Actions.isOutcome(entry)) return entry;
    if (!args?.stamp) {
      args = await this.pickGeneration(entry, title);
      if (!args) return declined;
    }
    const storage = args.storage ?? (entry.dep!.storages.length === 1 ? entry.dep!.storages[0]!.name : 'main');
    return { entry, g: { storage, kind: args.kind ?? 'backup', stamp: args.stamp } };
  }

  /** The generation's piece file, from the listing. */
  private pieceOf(entry: Entry, g: { storage: string; kind: Kind; stamp: string }): string | undefined {
    const view = entry.views?.find((v) => v.storage === g.storage);
    const group = view?.groups.find((x) => x.kind === g.kind);
    for (const c of group?.chains ?? []) {
      for (const gen of [c.full, ...c.incrementals]) if (gen.stamp === g.stamp) return path.join(group!.repository, gen.name);
    }
    return undefined;
  }

  private async afterChange(): Promise<void> {
    await this.model.refresh();
    this.diagnostics.schedule(300);
  }

  // ------------------------------------------------------------------ backups

  async backup(kind: BackupCommand, arg?: unknown): Promise<Outcome<StorageBackupResult[]>> {
    const verb = BACKUP_TITLES[kind];
    const entry = await this.entryFor(arg, `${verb} the site`);
    if (Actions.isOutcome(entry)) return entry;
    const dep = entry.dep!;
    const title = `${verb} ${entry.name}`;
    const stop = await this.mayWrite(entry, title);
    if (stop) return stop;
    const out = await this.ui.run(title, this.runArgs(arg), (signal, onProgress) =>
      recordRun(dep, kind, () => backupDeployment(dep, kind, { signal, onProgress, log: (m) => this.ui.output.info(m) }), this.runLog(true)),
    );
    if (out.status === 'done') {
      const lines: string[] = [];
      let made = 0;
      for (const r of out.value) {
        const f = r.filestorage;
        const piece = f.action === 'none' ? 'no new transactions' : `${f.action} ${f.piece} (${humanBytes(f.end - f.start)}, ${plural(f.transactions, 'transaction')})`;
        if (f.action !== 'none' || r.blobGeneration) made++;
        const blobs = r.blobGeneration ? `; blobs ${path.basename(r.blobGeneration)} (${plural(r.blobFiles ?? 0, 'file')})` : '';
        const removed = r.removed.length ? `; removed ${plural(r.removed.length, 'old file')}` : '';
        lines.push(`${r.storage}: ${piece}${blobs}${removed}`);
      }
      for (const l of lines) this.ui.output.info(`  ${l}`);
      // In words; the file names are in the Output channel.
      const said = out.value.map((r) => {
        const f = r.filestorage;
        const what =
          f.action === 'none'
            ? 'no new transactions'
            : `${f.action === 'full' ? 'a full backup' : 'an incremental backup'} of ${plural(f.transactions, 'transaction')} (${humanBytes(f.end - f.start)})`;
        const blobs = r.blobGeneration ? `, ${plural(r.blobFiles ?? 0, 'blob file')}` : '';
        return `${out.value.length > 1 ? `${r.storage}: ` : ''}${what}${blobs}`;
      });
      if (made === 0) this.ui.info(`${entry.name}: no new transactions since the last backup; nothing to do.`);
      else this.ui.info(`${BACKUP_DONE[kind]} ${entry.name}: ${said.join('; ')}.`, ...this.showBackups());
    }
    await this.afterChange();
    return out;
  }

  // ------------------------------------------------------------------ restore

  private async pickRestorePoint(entry: Entry): Promise<Picked> {
    const zone = zoneName(new Date());
    // The newest generation first, so that Enter restores it; the date box last.
    const items: GenerationPick[] = [
      ...this.generationItems(entry),
      { label: '', kind: vscode.QuickPickItemKind.Separator },
      { label: '$(calendar) Type a date…', description: 'the newest backup before a date, in local time', typeDate: true, alwaysShow: true },
    ];
    const pick = await vscode.window.showQuickPick(items, {
      title: `Restore ${entry.name}`,
      placeHolder: 'Pick the generation to restore, or type a date',
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (!pick) return undefined;
    if (pick.located)
      return { kind: pick.located.gen.kind, date: pick.located.gen.stamp, label: `the ${KINDS[pick.located.gen.kind].noun} of ${localTime(pick.located.gen.stamp)}` };
    const backups = generationsOf([entry]).filter((l) => l.gen.kind === 'backup');
    /** The backup a restore to `date` (a repozo date) takes: the newest not after it. */
    const pickFor = (date: string) => backups.filter((l) => l.gen.stamp <= date).sort((a, b) => (a.gen.stamp < b.gen.stamp ? 1 : -1))[0];
    const date = await askRestoreDate({
      title: `Restore ${entry.name}`,
      // The zone of the date typed (CET or CEST) is the preview's to say; here only "local".
      prompt: `The newest backup before this moment, in local time${zone ? ` (the preview names the zone)` : ''}: yyyy-mm-dd hh:mm[:ss]; end it with Z for UTC.`,
      placeHolder: format(new Date(), 'yyyy-MM-dd HH:mm'),
      // A live preview of what Enter restores.
      preview: (d) => {
        const l = pickFor(d);
        return (
          l &&
          `the ${l.gen.full ? 'full' : 'incremental'} backup of ${localTime(l.gen.stamp)}, ${plural(l.gen.transactions, 'transaction')}${lastTxn(l.gen) ? `, last ${lastTxn(l.gen)}` : ''}`
        );
      },
      none: (d) => `No backup before ${localTime(d)}.`,
    });
    if (!date) return undefined;
    // The confirmation and the result name the backup chosen, as the preview did.
    const chosen = pickFor(date);
    return {
      kind: 'backup',
      date,
      label: chosen ? `the ${chosen.gen.full ? 'full' : 'incremental'} backup of ${localTime(chosen.gen.stamp)}` : `the newest backup before ${localTime(date)}`,
    };
  }

  private describePlan(entry: Entry, p: StoragePlan, keepOld: boolean): string {
    const s = p.storage;
    const what = `${this.rel(entry, s.file)}${s.blobDir ? ` and ${this.rel(entry, s.blobDir)}` : ''}`;
    const when = p.stamp ? localTime(p.stamp) : '';
    const pieces = plural(p.chain.length, 'piece');
    let line: string;
    if (p.mode === 'full') {
      line = `${s.name}: replaces ${what} with the state of ${when} (${pieces}).`;
      line += keepOld
        ? ` The current ${path.basename(s.file)}${s.blobDir ? ` and ${path.basename(s.blobDir)}` : ''} are kept beside them as ${path.basename(s.file)}.before-restore-<now>${s.blobDir ? ` and ${path.basename(s.blobDir)}.before-restore-<now>` : ''}.`
        : ' The current state is deleted.';
    } else if (p.mode === 'incremental') {
      const n = p.chain.length - 1 - (p.appendAfter ?? 0);
      line = `${s.name}: appends the ${plural(n, 'missing piece')} to ${this.rel(entry, s.file)} up to ${when}${s.blobDir ? ' and adds the missing blob files' : ''}; nothing is replaced.`;
    } else if (p.mode === 'blobs') {
      line = `${s.name}: replaces ${s.blobDir ? this.rel(entry, s.blobDir) : 'the blobstorage'} with the blob backup of ${when} (only_blobs: ${this.rel(entry, s.file)} stays as it is).`;
    } else {
      line = `${s.name}: already holds the state of ${when}; only missing blob files are added.`;
    }
    if (p.mismatch) line += ` Warning: ${p.mismatch}.`;
    return line;
  }

  /**
   * What the restore will do, confirmed (unless `yes`); with `onlyMissingBlobs`
   * (the Quick Fix), refused when a storage would be replaced or appended to.
   * An outcome: stop.
   */
  private async confirmRestore(entry: Entry, session: RestoreSession, args: RestoreArgs, label: string, yes: boolean): Promise<Outcome<never> | undefined> {
    const moved = args.onlyMissingBlobs ? session.plans.filter((p) => p.mode !== 'unchanged') : [];
    const from = label.replace(/^the missing blob files of /, '');
    if (moved.length) {
      return this.ui.failed(
        'Restore',
        new PloneBackupError(
          'USAGE',
          `${entry.name} is no longer in the state of ${from} (${moved.map((p) => p.storage.name).join(', ')} changed since), so its missing blob files cannot be added from it without replacing ${moved.length > 1 ? 'the databases' : 'the database'}; nothing was restored.`,
          {
            hint: 'Run "Plone Backup: Check Consistency" again, or pick a backup with "Plone Backup: Restore…".',
          },
        ),
      );
    }
    if (yes) return undefined;
    const files = args.onlyMissingBlobs && Array.isArray(args.blobFiles) ? args.blobFiles.filter((f) => typeof f === 'string') : [];
    const detail = [
      ...session.plans.map((p) => this.describePlan(entry, p, session.keepOld)),
      ...(files.length ? ['', 'Missing now:', ...files.slice(0, 8).map((f) => `  ${this.rel(entry, f)}`), ...(files.length > 8 ? ['  …'] : [])] : []),
      '',
      'The site stays locked (it cannot start) until the restore is done.',
    ].join('\n');
    const message = args.onlyMissingBlobs ? `Restore ${label} into ${entry.name}?` : `Restore ${entry.name} to ${label}?`;
    if (await confirm({ kind: 'restore', message, detail, action: 'Restore' }, this.hooks)) return undefined;
    this.ui.output.info('Restore: not confirmed; nothing was restored.');
    return declined;
  }

  async restore(arg?: unknown): Promise<Outcome<StorageRestoreResult[]>> {
    const args: RestoreArgs = isGenerationNode(arg) ? { ...generationArgs(arg) } : ((arg as RestoreArgs | undefined) ?? {});
    const entry = await this.entryFor(isNode(arg) ? arg : args, 'Restore');
    if (Actions.isOutcome(entry)) return entry;
    const dep = entry.dep!;
    let kind: Kind = args.kind ?? 'backup';
    let date: string;
    let label: string;
    try {
      if (args.stamp) {
        date = normalizeDateArg(args.stamp);
        label = `the ${KINDS[kind].noun} of ${localTime(args.stamp)}`;
        if (args.onlyMissingBlobs) label = `the missing blob files of the ${KINDS[kind].noun} of ${localTime(args.stamp)}`;
      } else if (args.date) {
        date = normalizeDateArg(args.date);
        label = `the newest ${KINDS[kind].noun} before ${args.date} UTC`;
      } else {
        const picked = await this.pickRestorePoint(entry);
        if (!picked) return declined;
        ({ kind, date, label } = picked);
      }
    } catch (e) {
      return this.ui.failed('Restore', e);
    }
    const title = `Restoring ${entry.name}`;
    const stop = await this.mayWrite(entry, 'Restore');
    if (stop) return stop;
    const { yes, force, keepOld } = this.bypass(args, 'Restore');
    // The locks, the "is the site running" refusal and the plan come first: what the confirmation shows is what runs.
    // Recorded in the run log: a restore that cannot be opened failed; a declined one is no run.
    const run = startRun(dep, KINDS[kind].restoreCommand, this.runLog(true));
    let session: RestoreSession;
    try {
      session = await openRestore(dep, { kind, date, force, keepOld, blobMode: args.blobMode, log: (m) => this.ui.output.info(m) });
    } catch (e) {
      await run.failed(e);
      return this.ui.failed('Restore', e);
    }
    let out: Outcome<StorageRestoreResult[]>;
    try {
      const stop = await this.confirmRestore(entry, session, args, label, yes);
      if (stop) return stop;
      out = await this.ui.run(title, args, (signal, onProgress) => run.track(() => session.run({ signal, onProgress })));
    } finally {
      await session.close();
    }
    if (out.status === 'done') {
      const kept: string[] = [];
      for (const r of out.value) {
        this.ui.output.info(
          `  ${r.storage}: ${r.mode} restore${r.stamp ? ` to ${r.stamp}` : ''} (${humanBytes(r.bytesWritten)} written, ${plural(r.blobFilesAdded, 'blob file')})`,
        );
        for (const k of r.keptOld) {
          this.ui.output.info(`    the previous state is kept at ${k}`);
          kept.push(this.rel(entry, k));
        }
        for (const w of r.warnings) this.ui.output.warn(`    ${r.storage}: ${w}`);
      }
      const warnings = out.value.flatMap((r) => r.warnings);
      const added = out.value.reduce((n, r) => n + r.blobFilesAdded, 0);
      const msg = args.onlyMissingBlobs
        ? `Added ${plural(added, 'missing blob file')} to ${entry.name} from ${label.replace(/^the missing blob files of /, '')}; ${path.basename(dep.storages[0]!.file)} is unchanged.`
        : `Restored ${entry.name} to ${label}.${kept.length ? ' The previous state is kept beside it.' : ''}`;
      // [Undo] puts the kept state back; [Reveal] shows it in the Explorer (the paths are in the Output channel).
      const keptFile = out.value.flatMap((r) => r.keptOld)[0];
      const after = kept.length
        ? [
            { title: 'Undo', run: () => this.undoRestore({ folder: entry.root }) },
            ...(keptFile ? [{ title: 'Reveal', run: () => vscode.commands.executeCommand('revealInExplorer', vscode.Uri.file(keptFile)) }] : []),
          ]
        : [];
      if (warnings.length) this.ui.warn(`${msg} Warning: ${warnings[0]}.`, { title: 'Show Output', run: () => this.ui.output.show(true) }, ...after);
      else this.ui.info(msg, ...after);
    }
    await this.afterChange();
    return out;
  }

  // ------------------------------------------------------------------ checks

  async verify(arg?: unknown): Promise<Outcome<Finding[]>> {
    const entry = await this.entryFor(arg, 'Verify the backups');
    if (Actions.isOutcome(entry)) return entry;
    const out = await this.ui.run(`Verifying the backups of ${entry.name}`, this.runArgs(arg), (signal, onProgress) =>
      this.readOnlyRun(entry, 'verify', () => this.diagnostics.check([entry], { live: false, backups: true, quick: false, signal, onProgress })),
    );
    if (out.status === 'done') {
      const problems = out.value.filter((f) => f.severity !== 'info');
      for (const f of problems) this.ui.output.warn(`  ${f.severity}: [${f.storage}] ${f.message}`);
      if (problems.length === 0) this.ui.info(`${entry.name}: every backup piece matches its .dat and every blob generation holds its state.`);
      else
        this.ui.warn(`${entry.name}: ${plural(problems.length, 'problem')} found in the backups.`, {
          title: 'Show Problems',
          run: () => vscode.commands.executeCommand('workbench.actions.view.problems'),
        });
    }
    return out;
  }

  async check(arg?: unknown): Promise<Outcome<Finding[]>> {
    const entry = await this.entryFor(arg, 'Check consistency');
    if (Actions.isOutcome(entry)) return entry;
    const out = await this.ui.run(`Checking ${entry.name}`, this.runArgs(arg), (signal, onProgress) =>
      this.readOnlyRun(entry, 'check', () => this.diagnostics.check([entry], { live: true, backups: true, quick: false, signal, onProgress })),
    );
    if (out.status === 'done') {
      const count = (s: Finding['severity']) => out.value.filter((f) => f.severity === s).length;
      const [errors, warnings, notes] = [count('error'), count('warning'), count('info')];
      for (const f of out.value) this.ui.output.info(`  ${f.severity}: [${f.storage}] ${f.message}${f.hint ? ` ${f.hint}` : ''}`);
      const show = { title: 'Show Problems', run: () => vscode.commands.executeCommand('workbench.actions.view.problems') };
      const summary = `${plural(errors, 'error')}, ${plural(warnings, 'warning')}${notes ? `, ${plural(notes, 'note')}` : ''}`;
      if (errors) this.ui.error(`Check of ${entry.name}: ${summary}.`, show);
      else if (warnings) this.ui.warn(`Check of ${entry.name}: ${summary}.`, show);
      else this.ui.info(`Check of ${entry.name}: no problems found${notes ? ` (${plural(notes, 'note')})` : ''}.`);
    }
    return out;
  }

  async drill(arg?: unknown): Promise<Outcome<DrillResult[]>> {
    const entry = await this.entryFor(arg, 'Run a restore drill');
    if (Actions.isOutcome(entry)) return entry;
    const dep = entry.dep!;
    const out = await this.ui.run(`Restore drill of ${entry.name}`, this.runArgs(arg), (signal, onProgress) =>
      this.readOnlyRun(entry, 'drill', () => drillDeployment(dep, { signal, onProgress })),
    );
    if (out.status === 'done') {
      const lines = out.value.map((r) =>
        r.ok
          ? `${r.storage} ${localTime(r.stamp)}: restored in ${r.restoreSeconds.toFixed(2)} s; ${plural(r.transactions, 'transaction')} read, index matches, ${plural(r.blobFiles, 'blob file')} present`
          : `${r.storage}${r.stamp ? ` ${localTime(r.stamp)}` : ''}: FAILED: ${r.problems.join('; ')}`,
      );
      for (const l of lines) this.ui.output.info(`  ${l}`);
      if (out.value.every((r) => r.ok)) this.ui.info(`Restore drill passed. ${lines.join('. ')}.`);
      else this.ui.error(`Restore drill failed. ${lines.join('. ')}.`, { title: 'Show Output', run: () => this.ui.output.show(true) });
    }
    return out;
  }

  // ------------------------------------------------------------------ one generation

  async revealInExplorer(arg?: unknown): Promise<Outcome<string>> {
    const t = await this.generationFor(arg, 'Reveal in the Explorer');
    if ('status' in t) return t;
    const file = this.pieceOf(t.entry, t.g);
    if (!file) return this.ui.failed('Reveal', new PloneBackupError('NOT_FOUND', `There is no ${KINDS[t.g.kind].noun} ${t.g.stamp} of ${t.g.storage}.`));
    const uri = vscode.Uri.file(file);
    if (vscode.workspace.getWorkspaceFolder(uri)) await vscode.commands.executeCommand('revealInExplorer', uri);
    else return this.revealInOS(arg);
    return { status: 'done', value: file };
  }

  async revealInOS(arg?: unknown): Promise<Outcome<string>> {
    const t = await this.generationFor(arg, 'Reveal in the file manager');
    if ('status' in t) return t;
    const file = this.pieceOf(t.entry, t.g);
    if (!file) return this.ui.failed('Reveal', new PloneBackupError('NOT_FOUND', `There is no ${KINDS[t.g.kind].noun} ${t.g.stamp} of ${t.g.storage}.`));
    const uri = vscode.Uri.file(file);
    const commands = await vscode.commands.getCommands(true);
    // revealFileInOS opens the file manager of the desktop the window runs on: it
    // does nothing for a file on a server (Remote-SSH, a dev container, WSL).
    if (commands.includes('revealFileInOS') && vscode.env.uiKind === vscode.UIKind.Desktop && !vscode.env.remoteName) {
      await vscode.commands.executeCommand('revealFileInOS', uri);
    } else {
      // A browser (code-server, vscode.dev) or a remote window cannot open the server's file manager.
      if (vscode.workspace.getWorkspaceFolder(uri)) await vscode.commands.executeCommand('revealInExplorer', uri);
      this.ui.info(`The backup is at ${file}.`, { title: 'Copy Path', run: () => vscode.env.clipboard.writeText(file) });
    }
    return { status: 'done', value: file };
  }

  /** Selects the generation's item in the Backups view (the Quick Fix "Show in Backups View"). */
  async revealGeneration(arg?: unknown): Promise<Outcome<string>> {
    const t = await this.generationFor(arg, 'Show in the Backups view');
    if ('status' in t) return t;
    if (!(await this.revealNode({ root: t.entry.root, ...t.g }))) {
      return this.ui.failed(
        'Show in the Backups view',
        new PloneBackupError('NOT_FOUND', `There is no ${KINDS[t.g.kind].noun} ${t.g.stamp} of ${t.g.storage} in the Backups view.`),
      );
    }
    return { status: 'done', value: t.g.stamp };
  }

  async copyStamp(arg?: unknown): Promise<Outcome<string>> {
    const t = await this.generationFor(arg, 'Copy the stamp');
    if ('status' in t) return t;
    try {
      await vscode.env.clipboard.writeText(t.g.stamp);
    } catch (e) {
      return this.ui.failed('Copy the stamp', e);
    }
    vscode.window.setStatusBarMessage(`$(copy) Copied ${t.g.stamp}`, 3000);
    return { status: 'done', value: t.g.stamp };
  }

  async deleteGeneration(arg?: unknown): Promise<Outcome<DeletionResult>> {
    const t = await this.generationFor(arg, 'Delete a generation');
    if ('status' in t) return t;
    const { entry, g } = t;
    const dep = entry.dep!;
    const stop = await this.mayWrite(entry, 'Delete');
    if (stop) return stop;
    const { yes } = this.bypass(isGenerationNode(arg) ? undefined : (arg as DeleteArgs | undefined), 'Delete');
    // Planned first, also without a question: a refusal is said with its way out.
    let plan;
    try {
      plan = await planDeletion(dep, g.storage, g.kind, g.stamp);
    } catch (e) {
      return this.refusedDelete(entry, e);
    }
    if (!yes) {
      const first = plan.generations[0]!;
      const others = plan.generations.slice(1);
      const detail = [
        others.length
          ? `This also deletes the ${plural(others.length, 'incremental')} continuing it (${others.map((x) => localTime(x.stamp)).join(', ')}), which restore nothing without it.`
          : '',
        `${plural(plan.files.length, 'file')} in ${this.rel(entry, plan.repository)}${plan.blobGenerations.length ? ` and ${plural(plan.blobGenerations.length, 'blob generation')}` : ''} are removed:`,
        ...[...plan.files, ...plan.blobGenerations].slice(0, 8).map((f) => `  ${path.basename(f)}`),
        plan.files.length + plan.blobGenerations.length > 8 ? '  …' : '',
        '',
        'This cannot be undone.',
      ]
        .filter((l, i) => l !== '' || i > 0)
        .join('\n');
      const ok = await confirm(
        { kind: 'delete', message: `Delete the ${first.full ? 'full' : 'incremental'} ${KINDS[g.kind].noun} of ${localTime(g.stamp)} (${g.storage})?`, detail, action: 'Delete' },
        this.hooks,
      );
      if (!ok) return declined;
    }
    const out = await this.ui.run(`Deleting the ${KINDS[g.kind].noun} of ${localTime(g.stamp)}`, undefined, (signal) =>
      deleteGeneration(dep, g.storage, g.kind, g.stamp, { signal, log: (m) => this.ui.output.info(m) }),
    );
    if (out.status === 'done') {
      for (const r of out.value.removed) this.ui.output.info(`  removed ${r}`);
      this.ui.info(`Deleted ${plural(out.value.stamps.length, 'generation')} of ${g.storage} (${out.value.stamps.map((x) => localTime(x)).join(', ')}).`);
    }
    await this.afterChange();
    return out;
  }

  /** A deletion refused because it would take the newest complete backup: said with the way out, [Full Backup]. */
  private refusedDelete(entry: Entry, e: unknown): Outcome<never> {
    const err = toPloneBackupError(e);
    if (err.code !== 'KEEP_NEWEST') return this.ui.failed('Delete', err);
    this.ui.error(`${err.message} A full backup starts a new chain, after which this one can go.`, {
      title: 'Full Backup',
      run: () => this.backup('fullbackup', { folder: entry.root }),
    });
    return { status: 'failed', code: err.code, message: err.userMessage };
  }

  /**
   * Delete Older Chains…: every chain of a group older than the one holding its
   * newest complete backup, each full backup with its incrementals and their
   * blob generations; one confirmation naming them.
   */
  async deleteOlderChains(arg?: unknown): Promise<Outcome<DeletionResult[]>> {
    const node = isNode(arg) && arg.type === 'group' ? arg : undefined;
    const a = node ? undefined : (arg as DeleteOlderArgs | undefined);
    const entry = await this.entryFor(node ? { folder: node.entry.root } : a, 'Delete older chains');
    if (Actions.isOutcome(entry)) return entry;
    const view = node?.view ?? entry.views?.find((v) => v.storage === (a?.storage ?? 'main')) ?? entry.views?.[0];
    const group = node?.group ?? view?.groups.find((g) => g.kind === (a?.kind ?? 'backup'));
    if (!view || !group) return this.ui.failed('Delete older chains', new PloneBackupError('NOT_FOUND', `${entry.name} has no such backups.`));
    const older = olderChains(group);
    if (older.length === 0) {
      this.ui.info(`${entry.name}: there is no ${KINDS[group.kind].noun} chain older than the newest one; nothing to delete.`);
      return { status: 'done', value: [] };
    }
    const stop = await this.mayWrite(entry, 'Delete');
    if (stop) return stop;
    const { yes } = this.bypass(a, 'Delete');
    if (!yes) {
      const n = older.reduce((k, f) => k + 1 + (group.chains.find((c) => c.full.stamp === f.stamp)?.incrementals.length ?? 0), 0);
      const ok = await confirm(
        {
          kind: 'delete',
          message: `Delete the ${plural(older.length, `older ${KINDS[group.kind].noun} chain`)} of ${view.storage} (${plural(n, 'generation')})?`,
          detail: [
            `Kept: the newest chain, from ${localTime(group.chains.at(-1)!.full.stamp)} on.`,
            'Deleted, each full backup with its incrementals and their blob generations:',
            ...older.slice(0, 8).map((f) => `  ${localTime(f.stamp)}`),
            older.length > 8 ? '  …' : '',
            '',
            'This cannot be undone.',
          ].join('\n'),
          action: 'Delete',
        },
        this.hooks,
      );
      if (!ok) return declined;
    }
    const dep = entry.dep!;
    const out = await this.ui.run(`Deleting older ${KINDS[group.kind].noun} chains of ${entry.name}`, undefined, async (signal) => {
      const results: DeletionResult[] = [];
      for (const f of older) results.push(await deleteGeneration(dep, view.storage, group.kind, f.stamp, { signal, log: (m) => this.ui.output.info(m) }));
      return results;
    });
    if (out.status === 'done')
      this.ui.info(
        `Deleted ${plural(
          out.value.reduce((k, r) => k + r.stamps.length, 0),
          'generation',
        )} of ${view.storage}; the newest chain is kept.`,
      );
    await this.afterChange();
    return out;
  }

  // ------------------------------------------------------------------ kept states

  /** Undo Last Restore: the newest kept state back in place, through a restore that keeps what it replaces. */
  async undoRestore(arg?: unknown): Promise<Outcome<UndoResult>> {
    const entry = await this.entryFor(isNode(arg) && arg.entry ? { folder: arg.entry.root } : arg, 'Undo the last restore');
    if (Actions.isOutcome(entry)) return entry;
    const last = entry.kept?.at(-1) ?? (await listKept(entry.dep!)).at(-1);
    if (!last) {
      this.ui.info(`${entry.name}: there is no restore to undo (nothing was kept beside the live files).`);
      return { status: 'done', value: { stamp: '', results: [], removed: [] } };
    }
    const title = `Undoing the restore of ${entry.name}`;
    const stop = await this.mayWrite(entry, title);
    if (stop) return stop;
    const { yes, force } = this.bypass(isNode(arg) ? undefined : (arg as RestoreArgs | undefined), 'Undo');
    const when = /^\d{4}(-\d\d){5}$/.test(last.stamp) ? localTime(last.stamp) : last.stamp;
    if (!yes) {
      const ok = await confirm(
        {
          kind: 'restore',
          message: `Undo the restore of ${when} in ${entry.name}?`,
          detail: [
            `Puts back the state that restore replaced (${humanBytes(last.bytes)}):`,
            ...last.storages.flatMap((k) => [k.file, k.blobDir].filter((p): p is string => !!p).map((p) => `  ${this.rel(entry, p)}`)),
            '',
            'The current state is kept beside it in turn, so this can be undone too. The site must be stopped.',
          ].join('\n'),
          action: 'Undo',
        },
        this.hooks,
      );
      if (!ok) return declined;
    }
    const dep = entry.dep!;
    const out = await this.ui.run(title, this.runArgs(arg), (signal, onProgress) =>
      recordRun(dep, 'undorestore', () => undoRestore(dep, { signal, onProgress, force, log: (m) => this.ui.output.info(m) }), this.runLog(true)),
    );
    if (out.status === 'done') {
      for (const r of out.value.removed) this.ui.output.info(`  removed the kept copy ${r}`);
      this.ui.info(`${entry.name} is back to the state before the restore of ${when}. What it replaced is kept beside it.`, {
        title: 'Undo',
        run: () => this.undoRestore({ folder: entry.root }),
      });
    }
    await this.afterChange();
    return out;
  }

  /** Delete Kept Copies…: one kept state (its node), or all of them. */
  async deleteKept(arg?: unknown): Promise<Outcome<string[]>> {
    const node = isNode(arg) && (arg.type === 'kept' || arg.type === 'keptState') ? arg : undefined;
    const a = node ? undefined : (arg as (TargetArgs & { stamps?: string[]; yes?: boolean }) | undefined);
    const entry = await this.entryFor(node ? { folder: node.entry.root } : a, 'Delete kept copies');
    if (Actions.isOutcome(entry)) return entry;
    const all = entry.kept ?? (await listKept(entry.dep!));
    const stamps = node?.type === 'keptState' ? [node.state.stamp] : (a?.stamps ?? all.map((k) => k.stamp));
    const doomed = all.filter((k) => stamps.includes(k.stamp));
    if (doomed.length === 0) {
      this.ui.info(`${entry.name}: there are no kept copies.`);
      return { status: 'done', value: [] };
    }
    const stop = await this.mayWrite(entry, 'Delete');
    if (stop) return stop;
    const { yes } = this.bypass(a, 'Delete');
    if (!yes) {
      const ok = await confirm(
        {
          kind: 'delete',
          message: `Delete ${doomed.length === 1 ? 'the state kept' : `the ${doomed.length} states kept`} by restores in ${entry.name} (${humanBytes(doomed.reduce((n, k) => n + k.bytes, 0))})?`,
          detail: [
            ...doomed.flatMap((k) => k.storages.flatMap((x) => [x.file, x.index, x.blobDir].filter((p): p is string => !!p).map((p) => `  ${this.rel(entry, p)}`))).slice(0, 12),
            '',
            'The live files and the backups are not touched. This cannot be undone.',
          ].join('\n'),
          action: 'Delete',
        },
        this.hooks,
      );
      if (!ok) return declined;
    }
    const dep = entry.dep!;
    const out = await this.ui.run(`Deleting kept copies of ${entry.name}`, undefined, () => deleteKept(dep, stamps));
    if (out.status === 'done') this.ui.info(`Deleted ${plural(doomed.length, 'kept state')} of ${entry.name}.`);
    await this.afterChange();
    return out;
  }

  // ------------------------------------------------------------------ remote

  /** What Push Now and Restore from Remote… (remoteActions.ts) share with the local commands: the same checks and confirmation. */
  shell(): ActionShell {
    return {
      ui: this.ui,
      hooks: this.hooks,
      entryFor: (a, t) => this.entryFor(a, t),
      mayWrite: (e, t) => this.mayWrite(e, t),
      bypass: (a, t) => this.bypass(a, t),
      confirmRestore: (e, s, a, l, y) => this.confirmRestore(e, s, a, l, y),
      afterChange: () => this.afterChange(),
      undoRestore: (a) => this.undoRestore(a),
      runLog: (f) => this.runLog(f),
    };
  }

  // ------------------------------------------------------------------ misc

  /** Schedule Backups…: install, show or remove the deployment's schedule (schedule.ts). */
  schedule(arg?: unknown): ReturnType<typeof scheduleCommand> {
    return scheduleCommand({ model: this.model, ui: this.ui, hooks: this.hooks, entryFor: (a, t) => this.entryFor(a, t), mayWrite: (e, t) => this.mayWrite(e, t) }, arg);
  }

  async refresh(): Promise<Outcome<number>> {
    await this.model.refresh();
    this.diagnostics.schedule(300);
    return { status: 'done', value: this.model.deployments.length };
  }

  async openSettings(): Promise<Outcome<void>> {
    // Workspace settings: paths there are relative to the workspace folder, as the settings mean them.
    const where = vscode.workspace.workspaceFolders?.length ? 'workbench.action.openWorkspaceSettings' : 'workbench.action.openSettings';
    await vscode.commands.executeCommand(where, { query: `@ext:${this.extensionId}` });
    return { status: 'done', value: undefined };
  }

  showOutput(): Outcome<void> {
    this.ui.output.show(true);
    return { status: 'done', value: undefined };
  }
}
