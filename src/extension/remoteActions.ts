/**
 * The remote's commands (issue 12): Push Now, Restore from Remote…, Set and
 * Forget Remote Credentials, Refresh Remote. The engine does the work as for
 * the CLI (pushDeployment; openRemoteRestore: fetch what the restore needs
 * into var/remotecache, then the local restore's session); this is the UI
 * around it, with the local commands' checks (actions.ts: trust, consent for
 * outside paths, the restore's confirmation and the "site must be stopped"
 * refusal, which the session makes before anything is asked).
 *
 * Off in an untrusted workspace, including listing (remote.ts says why).
 */

import * as vscode from 'vscode';
import {
  KINDS,
  KIND_ORDER,
  PloneBackupError,
  age,
  humanBytes,
  localTime,
  normalizeDateArg,
  openRemoteRestore,
  parseRemoteUrl,
  plural,
  pushDeployment,
  recordRun,
  startRun,
  type FetchResult,
  type Kind,
  type PushResult,
  type RestoreSession,
  type RunLogOptions,
  type StorageRestoreResult,
} from '../engine';
import type { Outcome, RemoteCredentialsArgs, RemoteRestoreArgs, RestoreArgs, TargetArgs } from './commands';
import { askRestoreDate } from './datePrompt';
import type { Entry } from './model';
import {
  notConfigured,
  openRemote,
  remoteGenerations,
  remoteOf,
  remoteOlder,
  type RemoteConfigured,
  type RemoteGen,
  type RemoteListings,
  type RemoteSecrets,
  type StoredCredentials,
} from './remote';
import type { TestHooks } from './safety';
import { isRemoteGenerationNode, type Node } from './tree';
import type { Ui } from './ui';

/** What the remote commands use of the local ones (actions.ts: `Actions.shell()`). */
export interface ActionShell {
  ui: Ui;
  hooks: TestHooks | undefined;
  entryFor(arg: unknown, title: string): Promise<Entry | Outcome<never>>;
  mayWrite(entry: Entry, title: string): Promise<Outcome<never> | undefined>;
  bypass(args: { yes?: unknown; force?: unknown; keepOld?: unknown } | undefined, title: string): { yes: boolean; force: boolean; keepOld?: false };
  confirmRestore(entry: Entry, session: RestoreSession, args: RestoreArgs, label: string, yes: boolean): Promise<Outcome<never> | undefined>;
  afterChange(): Promise<void>;
  undoRestore(arg: TargetArgs): unknown;
  runLog(onFailure: boolean): RunLogOptions;
}

/** Whether the workspace is trusted; the in-host tests may say it is not (the runner disables trust). */
export class RemoteTrust {
  /** Tests only (the API exists only under the test hooks): overrides the workspace's trust. */
  override?: boolean;
  trusted(): boolean {
    return this.override ?? vscode.workspace.isTrusted;
  }
}

const declined: Outcome<never> = { status: 'declined' };

function isNode(x: unknown): x is Node {
  return typeof x === 'object' && x !== null && typeof (x as Node).type === 'string' && 'entry' in (x as object);
}

interface RemotePick extends vscode.QuickPickItem {
  stamp?: string;
  backupKind?: Kind;
  typeDate?: boolean;
}

/** Whether a URL may be written to the run log (it parses: a URL carrying credentials does not). */
function safeUrl(url: string): boolean {
  try {
    parseRemoteUrl(url);
    return true;
  } catch {
    return false;
  }
}

export class RemoteActions {
  constructor(
    private readonly shell: ActionShell,
    readonly listings: RemoteListings,
    private readonly secrets: RemoteSecrets,
    readonly trust: RemoteTrust,
  ) {}

  private get ui(): Ui {
    return this.shell.ui;
  }

  /** The deployment and its remote, or why not: not trusted (for what sends or fetches), none configured. */
  private async target(arg: unknown, title: string, needsTrust = true): Promise<{ entry: Entry; remote: RemoteConfigured } | Outcome<never>> {
    const entry = await this.shell.entryFor(isNode(arg) && arg.entry ? { folder: arg.entry.root } : arg, title);
    if ('status' in entry) return entry;
    if (needsTrust && !this.trust.trusted()) {
      return this.ui.failed(
        title,
        new PloneBackupError('USAGE', 'This workspace is not trusted: its remote is not used from here; nothing was sent or fetched.', {
          hint: 'Trust the workspace (Manage Workspace Trust) to push to, list and restore from the remote it names.',
        }),
      );
    }
    const remote = remoteOf(entry, this.trust.trusted());
    if (!remote) return this.ui.failed(title, notConfigured(entry.name));
    return { entry, remote };
  }

  private open(entry: Entry, remote: RemoteConfigured, stored: StoredCredentials | undefined, o: { create?: boolean; signal?: AbortSignal }) {
    return openRemote(entry, remote, stored, o);
  }

  // ------------------------------------------------------------------ push

  async push(arg?: unknown): Promise<Outcome<PushResult>> {
    const t = await this.target(arg, 'Push to the remote');
    if ('status' in t) return t;
    const { entry, remote } = t;
    const dep = entry.dep!;
    const title = `Pushing ${entry.name} to ${remote.url}`;
    const stop = await this.shell.mayWrite(entry, title);
    if (stop) return stop;
    const stored = await this.secrets.get(remote);
    const runArgs = isNode(arg) ? undefined : (arg as RemoteRestoreArgs | undefined);
    // A push is a run, as the CLI's is: in the run log (the status bar and Last runs show it), on_failure on failure.
    const out = await this.ui.run(title, runArgs, (signal, onProgress) =>
      recordRun(
        dep,
        'push',
        async () => {
          const target = await this.open(entry, remote, stored, { create: true, signal });
          try {
            return await pushDeployment(dep, target, { signal, onProgress, log: (m) => this.ui.output.info(m) });
          } finally {
            target.close();
          }
        },
        // The remote named also when the push fails before it reaches it (a URL that parses: never one carrying credentials).
        { ...this.shell.runLog(true), ...(safeUrl(remote.url) ? { remote: remote.url } : {}) },
      ),
    );
    if (out.status === 'done') {
      const r = out.value;
      for (const s of r.storages) {
        this.ui.output.info(`  ${s.storage}: pushed ${s.pushed.join(', ') || 'nothing'} (${plural(s.objects, 'object')}, ${humanBytes(s.bytes)}); ${s.present} already there`);
        for (const k of s.skipped) this.ui.output.warn(`  ${s.storage} ${k.stamp} not pushed: ${k.why}`);
      }
      this.ui.output.info(`  ${plural(r.stats.requests, 'request')}, ${humanBytes(r.stats.uploaded)} sent`);
      const pushed = r.storages.filter((s) => s.pushed.length);
      const several = r.storages.length > 1;
      const skipped = r.storages.flatMap((s) => s.skipped.map((k) => `${several ? `${s.storage} ` : ''}${localTime(k.stamp)}: ${k.why}`));
      const said = pushed.length
        ? `Pushed ${entry.name} to ${remote.url}: ${pushed
            .map((s) => `${several ? `${s.storage} ` : ''}${plural(s.pushed.length, 'generation')} (${plural(s.objects, 'object')}, ${humanBytes(s.bytes)})`)
            .join('; ')}.`
        : `${entry.name}: nothing new to push; ${remote.url} holds every generation already.`;
      if (skipped.length) this.ui.warn(`${said} Not pushed: ${skipped[0]}${skipped.length > 1 ? ` and ${skipped.length - 1} more` : ''}.`);
      else this.ui.info(said);
    }
    this.listings.refresh(entry.root);
    return out;
  }

  // ------------------------------------------------------------------ restore

  /** The remote generation (or the newest before a typed local date) to restore. */
  private async pickRemote(entry: Entry, remote: RemoteConfigured): Promise<{ date: string; label: string; kind: Kind } | Outcome<never>> {
    let listing = this.listings.peek(entry, remote);
    if (!listing || listing.state === 'loading')
      listing = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Listing ${remote.url}` }, () => this.listings.load(entry, remote));
    if (listing.state === 'error') return this.ui.failed('Restore from the remote', listing.error);
    if (listing.state !== 'done') return declined;
    // The main storage's generations: a date restores every storage to its newest generation before it.
    // Every kind the remote holds, each under its own separator when there are several (as the section groups them).
    const main = entry.dep!.storages[0]!.name;
    const all = remoteGenerations(listing.views).filter((g) => g.storage === main && !g.gen.problem);
    const gens = all.filter((g) => g.kind === 'backup');
    if (!all.length) {
      this.ui.info(`${remote.url} holds no generation of ${entry.name} yet.`);
      return declined;
    }
    const kinds = KIND_ORDER.filter((k) => all.some((g) => g.kind === k));
    const pickOf = ({ gen: g, kind }: RemoteGen): RemotePick => ({
      label: `$(cloud) ${localTime(g.stamp)}`,
      description: [
        age(g.stamp),
        ...(kind === 'backup' ? [] : [KINDS[kind].noun]),
        g.full ? 'full' : 'incremental',
        humanBytes(g.end - g.start),
        ...(g.transactions !== undefined ? [plural(g.transactions, 'transaction')] : []),
      ].join(' · '),
      detail: [
        g.lastDescription || g.lastUser ? `${g.lastDescription ? `"${g.lastDescription}"` : '(no description)'}${g.lastUser ? ` by ${g.lastUser.trim()}` : ''}` : '',
        g.blobFiles !== undefined ? plural(g.blobFiles, 'blob file') : '',
      ]
        .filter(Boolean)
        .join(' · '),
      stamp: g.stamp,
      backupKind: kind,
    });
    const items: RemotePick[] = [
      ...kinds.flatMap((k) => [
        ...(kinds.length > 1 ? [{ label: KINDS[k].label, kind: vscode.QuickPickItemKind.Separator } as RemotePick] : []),
        ...all.filter((g) => g.kind === k).map(pickOf),
      ]),
      { label: '', kind: vscode.QuickPickItemKind.Separator },
      { label: '$(calendar) Type a date…', description: 'the newest remote backup before a date, in local time', typeDate: true, alwaysShow: true },
    ];
    const pick = await vscode.window.showQuickPick(items, {
      title: `Restore ${entry.name} from ${remote.url}`,
      placeHolder: 'Pick the remote generation to restore, or type a date',
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (!pick) return declined;
    if (pick.stamp) return { date: pick.stamp, label: `the ${KINDS[pick.backupKind ?? 'backup'].noun} of ${localTime(pick.stamp)}`, kind: pick.backupKind ?? 'backup' };
    // A date: regular backups. Older ones than those listed are on the remote too (listRemote's limit): the restore finds them.
    const older = remoteOlder(listing.views, 'backup') > 0;
    const before = (date: string) => gens.find((g) => g.gen.stamp <= date);
    const date = await askRestoreDate({
      title: `Restore ${entry.name} from ${remote.url}`,
      prompt: 'The newest remote backup before this moment, in local time: yyyy-mm-dd hh:mm[:ss]; end it with Z for UTC.',
      preview: (d) => {
        const g = before(d);
        if (!g && older) return `the newest remote backup before ${localTime(d)} (older than those listed)`;
        return g && `the ${g.gen.full ? 'full' : 'incremental'} backup of ${localTime(g.gen.stamp)}`;
      },
      none: (d) => `No remote backup before ${localTime(d)}.`,
    });
    if (!date) return declined;
    const g = before(date);
    return { date, label: g ? `the backup of ${localTime(g.gen.stamp)}` : `the newest backup before ${localTime(date)}`, kind: 'backup' };
  }

  async restore(arg?: unknown): Promise<Outcome<StorageRestoreResult[]>> {
    const node = isRemoteGenerationNode(arg) ? arg : undefined;
    const args: RemoteRestoreArgs = node ? { stamp: node.gen.stamp, kind: node.kind } : isNode(arg) ? {} : ((arg as RemoteRestoreArgs | undefined) ?? {});
    const t = await this.target(isNode(arg) ? arg : args, 'Restore from the remote');
    if ('status' in t) return t;
    const { entry, remote } = t;
    const dep = entry.dep!;
    let date: string;
    let label: string;
    // Regular backups, snapshots or zip backups: each restored from its space, as the CLI's snapshotrestore/ziprestore --from.
    let kind: Kind = args.kind ?? 'backup';
    try {
      if (!KIND_ORDER.includes(kind))
        throw new PloneBackupError('USAGE', `There is no kind of backup called ${JSON.stringify(kind)}.`, { hint: `Give one of ${KIND_ORDER.join(', ')}.` });
      if (args.stamp) {
        date = normalizeDateArg(args.stamp);
        label = `the ${KINDS[kind].noun} of ${localTime(args.stamp)}`;
      } else if (args.date) {
        date = normalizeDateArg(args.date);
        label = `the newest ${KINDS[kind].noun} before ${args.date} UTC`;
      } else {
        const picked = await this.pickRemote(entry, remote);
        if ('status' in picked) return picked;
        ({ date, label, kind } = picked);
      }
    } catch (e) {
      return this.ui.failed('Restore from the remote', e);
    }
    const stop = await this.shell.mayWrite(entry, 'Restore');
    if (stop) return stop;
    const { yes, force, keepOld } = this.shell.bypass(args, 'Restore');
    const stored = await this.secrets.get(remote);
    // Recorded in the run log as a restore: one that cannot be fetched or opened failed; a declined one is no run.
    const run = startRun(dep, 'restore', this.shell.runLog(true));
    // Fetching what the restore needs (only what the site lacks), then the locks, the "is the site running" refusal and the plan.
    const opened = await this.ui.run(`Fetching ${label} from ${remote.url}`, args, async (signal, onProgress) => {
      const target = await this.open(entry, remote, stored, { signal });
      try {
        return await openRemoteRestore(dep, target, {
          kind,
          date,
          force,
          keepOld,
          incremental: args.fullRestore ? false : undefined,
          signal,
          onProgress,
          log: (m) => this.ui.output.info(m),
        });
      } finally {
        target.close();
      }
    });
    if (opened.status !== 'done') {
      if (opened.status === 'failed') await run.failed(new PloneBackupError(opened.code as PloneBackupError['code'], opened.message));
      return opened;
    }
    const { session, fetched } = opened.value;
    let out: Outcome<StorageRestoreResult[]>;
    try {
      const stop = await this.shell.confirmRestore(entry, session, {}, `${label} from ${remote.url}`, yes);
      if (stop) return stop;
      out = await this.ui.run(`Restoring ${entry.name}`, args, (signal, onProgress) => run.track(() => session.run({ signal, onProgress })));
    } finally {
      await session.close();
    }
    if (out.status === 'done') this.sayRestored(entry, remote, label, out.value, fetched);
    await this.shell.afterChange();
    return out;
  }

  private sayRestored(entry: Entry, remote: RemoteConfigured, label: string, results: StorageRestoreResult[], fetched: FetchResult[]): void {
    for (const f of fetched)
      this.ui.output.info(`  ${f.storage}: fetched ${plural(f.fetched, 'object')} (${humanBytes(f.bytes)}) of ${f.stamp}; ${plural(f.liveBlobs, 'blob file')} already in the site`);
    for (const r of results) {
      this.ui.output.info(`  ${r.storage}: ${r.mode} restore${r.stamp ? ` to ${r.stamp}` : ''} (${humanBytes(r.bytesWritten)} written, ${plural(r.blobFilesAdded, 'blob file')})`);
      for (const k of r.keptOld) this.ui.output.info(`    the previous state is kept at ${k}`);
      for (const w of r.warnings) this.ui.output.warn(`    ${r.storage}: ${w}`);
    }
    const objects = fetched.reduce((n, f) => n + f.fetched, 0);
    const bytes = fetched.reduce((n, f) => n + f.bytes, 0);
    const incremental = results.length > 0 && results.every((r) => r.mode === 'incremental' || r.mode === 'unchanged');
    const kept = results.some((r) => r.keptOld.length);
    const msg = `Restored ${entry.name} to ${label} from ${remote.url}${incremental ? ' (incremental: only the missing pieces and blob files)' : ''}; fetched ${objects ? `${plural(objects, 'object')}, ${humanBytes(bytes)}` : 'nothing new'}.${kept ? ' The previous state is kept beside it.' : ''}`;
    const warnings = results.flatMap((r) => r.warnings);
    const after = kept ? [{ title: 'Undo', run: () => this.shell.undoRestore({ folder: entry.root }) }] : [];
    if (warnings.length) this.ui.warn(`${msg} Warning: ${warnings[0]}.`, { title: 'Show Output', run: () => this.ui.output.show(true) }, ...after);
    else this.ui.info(msg, ...after);
  }

  // ------------------------------------------------------------------ credentials

  /** Set Remote Credentials…: the access key and secret (and an encrypted remote's passphrase), into SecretStorage for this remote. */
  async setCredentials(arg?: unknown): Promise<Outcome<'stored' | 'removed'>> {
    const t = await this.target(arg, 'Set the remote credentials');
    if ('status' in t) return t;
    const { entry, remote } = t;
    const a = isNode(arg) ? undefined : (arg as RemoteCredentialsArgs | undefined);
    const given = a && (a.accessKeyId !== undefined || a.secretAccessKey !== undefined || a.sessionToken !== undefined || a.passphrase !== undefined);
    let c: StoredCredentials;
    if (given && this.shell.hooks?.bypassArgs) {
      c = {
        accessKeyId: a.accessKeyId || undefined,
        secretAccessKey: a.secretAccessKey || undefined,
        sessionToken: a.sessionToken || undefined,
        passphrase: a.passphrase || undefined,
      };
    } else {
      if (given) this.ui.output.warn("Set Remote Credentials: ignored the values in the command's arguments; they are asked for.");
      const title = `Credentials for ${remote.url}${remote.endpoint ? ` at ${remote.endpoint}` : ''}`;
      const now = await this.secrets.get(remote);
      const id = await vscode.window.showInputBox({
        title,
        prompt: 'Access key id (empty: the AWS profile or environment, as the CLI)',
        value: now?.accessKeyId ?? '',
        ignoreFocusOut: true,
      });
      if (id === undefined) return declined;
      let secret: string | undefined;
      let token: string | undefined;
      if (id.trim()) {
        secret = await vscode.window.showInputBox({
          title,
          prompt: `Secret access key of ${id.trim()}`,
          password: true,
          ignoreFocusOut: true,
          validateInput: (v) => (v.trim() ? undefined : 'The secret access key goes with the access key id.'),
        });
        if (secret === undefined) return declined;
        // Temporary credentials (an assumed role, SSO) carry a session token; permanent keys have none.
        token = await vscode.window.showInputBox({
          title,
          prompt: 'Session token, for temporary credentials (STS, an assumed role, SSO); empty: none',
          value: now?.accessKeyId === id.trim() ? (now?.sessionToken ?? '') : '',
          password: true,
          ignoreFocusOut: true,
        });
        if (token === undefined) return declined;
      }
      const passphrase = await vscode.window.showInputBox({
        title,
        prompt: 'Encryption passphrase, if this remote is encrypted (empty: none)',
        password: true,
        ignoreFocusOut: true,
      });
      if (passphrase === undefined) return declined;
      c = { accessKeyId: id.trim() || undefined, secretAccessKey: secret?.trim() || undefined, sessionToken: token?.trim() || undefined, passphrase: passphrase || undefined };
    }
    if (c.accessKeyId && !c.secretAccessKey) {
      return this.ui.failed('Set the remote credentials', new PloneBackupError('USAGE', 'An access key id needs its secret access key; nothing was stored.'));
    }
    if (c.sessionToken && !c.accessKeyId) {
      return this.ui.failed('Set the remote credentials', new PloneBackupError('USAGE', 'A session token goes with the access key it was issued with; nothing was stored.'));
    }
    if (!c.accessKeyId && !c.passphrase) {
      await this.secrets.delete(remote);
      this.listings.refresh(entry.root);
      this.ui.info(`Nothing stored for ${remote.url}: runs use the AWS profile or environment.`);
      return { status: 'done', value: 'removed' };
    }
    await this.secrets.set(remote, c);
    this.listings.refresh(entry.root);
    const what = [c.accessKeyId ? `the access key ${c.accessKeyId}${c.sessionToken ? ' with its session token' : ''}` : '', c.passphrase ? 'the encryption passphrase' : '']
      .filter(Boolean)
      .join(' and ');
    this.ui.info(`Stored ${what} for ${remote.url} in VS Code's secret storage (never in settings.json).`);
    return { status: 'done', value: 'stored' };
  }

  async forgetCredentials(arg?: unknown): Promise<Outcome<'removed'>> {
    const t = await this.target(arg, 'Forget the remote credentials', false);
    if ('status' in t) return t;
    await this.secrets.delete(t.remote);
    this.listings.refresh(t.entry.root);
    this.ui.info(`Forgot the credentials stored for ${t.remote.url}; runs now use the AWS profile or environment.`);
    return { status: 'done', value: 'removed' };
  }

  /** Refresh on the Remote section: its generations are listed again when shown. */
  async refresh(arg?: unknown): Promise<Outcome<void>> {
    if (isNode(arg)) this.listings.refresh(arg.entry?.root);
    else {
      const folder = (arg as TargetArgs | undefined)?.folder;
      const entry = folder === undefined ? undefined : await this.shell.entryFor(arg, 'Refresh the remote');
      this.listings.refresh(entry && !('status' in entry) ? entry.root : undefined);
    }
    return { status: 'done', value: undefined };
  }
}
