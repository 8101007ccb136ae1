/**
 * Plone Backup for VS Code: a thin layer over the engine (src/engine), which
 * the CLI uses the same way. The Backups view lists every generation of the
 * deployments in the workspace; commands back up, restore, verify, drill,
 * check and delete; the Problems panel shows the consistency findings; the
 * status bar shows the newest backup's age and the run log's last run or
 * failure; Show Backup History draws the history (history.ts); Quick Fixes
 * act on the Problems entries (quickfix.ts), and the recent blob files are
 * watched for deletion (blobWatch.ts). A remote (S3, file://), when one is
 * configured, has its section in the view and its commands: Push Now, Restore
 * from Remote…, the credentials in SecretStorage (remote.ts, remoteActions.ts).
 *
 * On open it reads: the workspace folders' plone-backup.json, zope.conf /
 * zeo.conf (with their %include files) and var/filestorage, the backup folders'
 * listings, .dat files and pieces (the listing keeps its cache,
 * .plone-backup-cache.json, in each backup folder that exists), and, with
 * ploneBackup.checkOnOpen in a trusted workspace, the Data.fs and blob folders
 * for the consistency check. All of it is asynchronous. It writes nothing else
 * until a command is run.
 *
 * Workspace trust (package.json: untrustedWorkspaces "limited"): in an
 * untrusted workspace it lists only; commands that write or delete refuse,
 * checkOnOpen waits for trust, and the path settings (restrictedConfigurations)
 * come from the user's settings only (settings.ts).
 *
 * activate() returns the parts only under the test hooks (safety.ts: the
 * in-host tests); otherwise nothing, so that no other extension can reach in.
 */

import * as vscode from 'vscode';
import type { Kind } from '../engine';
import { Actions } from './actions';
import { Command, ContextKey, VIEW_ID, CONFIG_SECTION, type CommandId } from './commands';
import { RecentBlobWatch } from './blobWatch';
import { Diagnostics, PROBLEMS_SCHEME } from './diagnostics';
import { HistoryPanel } from './history';
import { QuickFixes } from './quickfix';
import { Model } from './model';
import { OutsideConsent, TEST_HOOKS_ENV, testHooksFromEnv, type TestHooks } from './safety';
import { checkOnOpen } from './settings';
import { BackupStatus } from './statusBar';
import { BackupsTree } from './tree';
import { Ui } from './ui';
import { extensionScheduleEnv, scheduleDescription } from './schedule';
import { RemoteListings, RemoteSecrets, remoteOf } from './remote';
import { RemoteActions, RemoteTrust } from './remoteActions';

export interface PloneBackupApi {
  model: Model;
  tree: BackupsTree;
  view: vscode.TreeView<unknown>;
  diagnostics: Diagnostics;
  blobWatch: RecentBlobWatch;
  status: BackupStatus;
  actions: Actions;
  output: vscode.LogOutputChannel;
  consent: OutsideConsent;
  hooks: TestHooks;
  history: HistoryPanel;
  remote: RemoteActions;
}

/** How long file events settle before the view is refreshed (a backup writes many files). */
const REFRESH_DEBOUNCE_MS = 500;
/** How long Data.fs writes settle before the live part is checked again. */
const CHECK_DEBOUNCE_MS = 1500;

export function activate(context: vscode.ExtensionContext): PloneBackupApi | undefined {
  const hooks = testHooksFromEnv();
  const output = vscode.window.createOutputChannel('Plone Backup', { log: true });
  const model = new Model(output, () => extensionScheduleEnv(hooks));
  const remoteTrust = new RemoteTrust();
  const secrets = new RemoteSecrets(context.secrets);
  const listings = new RemoteListings(secrets, output);
  const tree = new BackupsTree(model, { listings, trusted: () => remoteTrust.trusted() });
  const view = vscode.window.createTreeView(VIEW_ID, { treeDataProvider: tree, showCollapseAll: true });
  const diagnostics = new Diagnostics(() => model.entries, output);
  const status = new BackupStatus(model);
  const ui = new Ui(output);
  const consent = new OutsideConsent(context.workspaceState, hooks, output);
  const reveal = async (g: { root: string; storage: string; kind: Kind; stamp: string }): Promise<boolean> => {
    await model.ready();
    let node = tree.findGeneration(g.root, g.storage, g.kind, g.stamp);
    if (!node) {
      // An older chain behind "Show older…" (the history reaches every generation).
      tree.showOlder(`${g.root}|${g.storage}|${g.kind}`);
      node = tree.findGeneration(g.root, g.storage, g.kind, g.stamp);
    }
    if (!node) return false;
    await vscode.commands.executeCommand(`${VIEW_ID}.focus`);
    await view.reveal(node, { select: true, focus: true, expand: true });
    return true;
  };
  const actions = new Actions(model, diagnostics, ui, context.extension.id, consent, hooks, () => view.visible, reveal);
  const remote = new RemoteActions(actions.shell(), listings, secrets, remoteTrust);
  const blobWatch = new RecentBlobWatch(diagnostics, () => model.entries, output);
  const history = new HistoryPanel(model, context.extensionUri, output);
  if (hooks) output.warn(`Test hooks are on (${TEST_HOOKS_ENV}=1): command arguments may skip confirmations.`);
  context.subscriptions.push(output, model, tree, view, diagnostics, blobWatch, status, history, listings);
  // Credentials stored or forgotten (also in another window): the remotes are listed again with them.
  context.subscriptions.push(secrets.onDidChange(() => listings.refresh()));
  // Quick Fixes on the reports of binary files (diagnostics.ts) and on the text files that carry entries themselves.
  context.subscriptions.push(
    vscode.languages.registerCodeActionsProvider([{ scheme: PROBLEMS_SCHEME }, { scheme: 'file' }], new QuickFixes(diagnostics, model), QuickFixes.metadata),
    // Looking at the backups: the recent blob files are looked at again.
    view.onDidChangeVisibility((e) => {
      if (e.visible) blobWatch.soon();
    }),
    model.onDidChange(() => void blobWatch.update()),
  );

  context.subscriptions.push(
    model.onDidChange(() => {
      void vscode.commands.executeCommand('setContext', ContextKey.ready, true);
      void vscode.commands.executeCommand('setContext', ContextKey.hasDeployment, model.deployments.length > 0 || model.entries.some((e) => e.error));
      void vscode.commands.executeCommand('setContext', ContextKey.hasBackups, model.hasBackups());
      void vscode.commands.executeCommand(
        'setContext',
        ContextKey.hasRemote,
        model.deployments.some((e) => remoteOf(e, remoteTrust.trusted())),
      );
      // The schedule of the one deployment in the view's title bar (several: on each deployment's row).
      const shown = model.entries.filter((e) => e.dep || e.error);
      view.description = shown.length === 1 ? scheduleDescription(shown[0]!) : undefined;
    }),
  );

  let refreshTimer: NodeJS.Timeout | undefined;
  let recheck = { live: false, backups: false };
  /** Relists after file events settle, then checks again what may have changed. */
  const refreshSoon = (parts: { live?: boolean; backups?: boolean } = { live: true, backups: true }) => {
    recheck = { live: recheck.live || !!parts.live, backups: recheck.backups || !!parts.backups };
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      refreshTimer = undefined;
      const parts = recheck;
      recheck = { live: false, backups: false };
      model.refresh().then(
        () => diagnostics.schedule(REFRESH_DEBOUNCE_MS, parts),
        (e) => output.warn(`refresh failed: ${(e as Error).message}`),
      );
    }, REFRESH_DEBOUNCE_MS);
  };
  context.subscriptions.push(
    { dispose: () => clearTimeout(refreshTimer) },
    model.onDidChangeOnDisk((what) => {
      if (what === 'storage') diagnostics.schedule(CHECK_DEBOUNCE_MS, { live: true });
      else if (what === 'backups') refreshSoon({ backups: true });
      else refreshSoon();
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration(CONFIG_SECTION) && !e.affectsConfiguration(`${CONFIG_SECTION}.statusBar`)) refreshSoon();
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(() => refreshSoon()),
    // Trusted now: the workspace's own path settings apply, and the check may run.
    vscode.workspace.onDidGrantWorkspaceTrust(() => {
      model.refresh().then(
        () => {
          if (checkOnOpen() && model.deployments.length) diagnostics.schedule(0);
        },
        (e) => output.warn(`refresh failed: ${(e as Error).message}`),
      );
    }),
  );

  // Commands never throw: an unexpected failure is shown like the engine's and returned.
  const register = (id: CommandId, fn: (...args: unknown[]) => unknown) =>
    context.subscriptions.push(
      vscode.commands.registerCommand(id, async (...args: unknown[]) => {
        try {
          return await fn(...args);
        } catch (e) {
          return ui.failed(id, e);
        }
      }),
    );
  register(Command.backup, (a) => actions.backup('backup', a));
  register(Command.fullBackup, (a) => actions.backup('fullbackup', a));
  register(Command.snapshot, (a) => actions.backup('snapshot', a));
  register(Command.zipBackup, (a) => actions.backup('zipbackup', a));
  register(Command.restore, (a) => actions.restore(a));
  register(Command.restoreGeneration, (a) => actions.restore(a));
  register(Command.verify, (a) => actions.verify(a));
  register(Command.drill, (a) => actions.drill(a));
  register(Command.check, (a) => actions.check(a));
  register(Command.revealInExplorer, (a) => actions.revealInExplorer(a));
  register(Command.revealInOS, (a) => actions.revealInOS(a));
  register(Command.copyStamp, (a) => actions.copyStamp(a));
  register(Command.deleteGeneration, (a) => actions.deleteGeneration(a));
  register(Command.deleteOlderChains, (a) => actions.deleteOlderChains(a));
  register(Command.undoRestore, (a) => actions.undoRestore(a));
  register(Command.deleteKept, (a) => actions.deleteKept(a));
  register(Command.revealGeneration, (a) => actions.revealGeneration(a));
  // Find a Backup…: the generations in a quick pick that matches dates, times and what was done; the pick is shown in the view.
  register(Command.findGeneration, () => actions.revealGeneration());
  register(Command.showOlder, (key) => {
    if (typeof key === 'string') tree.showOlder(key);
    return { status: 'done', value: undefined };
  });
  // The Remote section's "… and N older" row: every generation on the remote read and shown.
  register(Command.showOlderRemote, (a) => {
    const folder = (a as { folder?: unknown } | undefined)?.folder;
    if (typeof folder === 'string') listings.showAll(folder);
    return { status: 'done', value: undefined };
  });
  // Schedule Backups…: systemd timers or crontab lines that run plone-backup (schedule.ts).
  register(Command.schedule, (a) => actions.schedule(a));
  register(Command.refresh, () => {
    listings.refresh();
    return actions.refresh();
  });
  // The remote (remoteActions.ts): off in an untrusted workspace.
  register(Command.pushNow, (a) => remote.push(a));
  register(Command.restoreFromRemote, (a) => remote.restore(a));
  register(Command.setRemoteCredentials, (a) => remote.setCredentials(a));
  register(Command.forgetRemoteCredentials, (a) => remote.forgetCredentials(a));
  register(Command.refreshRemote, (a) => remote.refresh(a));
  register(Command.openSettings, () => actions.openSettings());
  register(Command.showOutput, () => actions.showOutput());
  register(Command.showHistory, () => history.show());

  model.refresh().then(
    () => {
      // (Not in an untrusted workspace: Diagnostics.schedule waits for trust.)
      if (checkOnOpen() && model.deployments.length) diagnostics.schedule(0);
    },
    (e) => output.error(`loading the deployments failed: ${(e as Error).message}`),
  );

  if (!hooks) return undefined;
  return { model, tree, view: view as vscode.TreeView<unknown>, diagnostics, blobWatch, status, actions, output, consent, hooks, history, remote };
}

export function deactivate(): void {}
