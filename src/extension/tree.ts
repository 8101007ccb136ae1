/**
 * The Backups view: deployment (when the workspace has several) > storage (when
 * the deployment has several) > Backups / Snapshots / Zip backups > full
 * backups, newest first > their incrementals; and, when a remote is
 * configured, a Remote section listing its generations (remote.ts: fetched
 * only when expanded, then cached). Everything shown comes from the engine's
 * listings (listDeployment, listRemote); nothing is computed here but the wording.
 */

import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  KINDS,
  age,
  compactTime,
  formatLocal,
  humanBytes,
  isDeletable,
  localTime,
  newestComplete,
  type KeptState,
  plural,
  type GenerationView,
  type GroupView,
  type Kind,
  type StorageView,
} from '../engine';

import { Command, type GenerationArgs } from './commands';
import type { Entry, Model } from './model';
import { scheduleDescription } from './schedule';
import type { RunRecord } from '../engine';
import { newestRuns, runBy, runCommandLine, runLine, runSizes, runAgo, LAST_RUNS } from './runs';
import {
  REMOTE_SHOWN,
  credentialsWord,
  remoteGenerations,
  remoteKinds,
  remoteOf,
  remoteOlder,
  severalStorages,
  whatToDo,
  type RemoteConfigured,
  type RemoteListings,
} from './remote';
import type { RemoteGenerationView } from '../engine';

export type Node =
  | { type: 'deployment'; entry: Entry }
  | { type: 'storage'; entry: Entry; view: StorageView }
  | { type: 'group'; entry: Entry; view: StorageView; group: GroupView }
  | {
      type: 'generation';
      entry: Entry;
      view: StorageView;
      group: GroupView;
      gen: GenerationView;
      /** For a full backup: its incrementals. */
      incrementals: GenerationView[];
      newestChain: boolean;
      /** The newest complete generation of its group: never deleted. */
      newestComplete: boolean;
      /** Whether Delete can succeed (it would not take the newest complete generation with it). */
      deletable: boolean;
    }
  | { type: 'kept'; entry: Entry }
  | { type: 'keptState'; entry: Entry; state: KeptState; newest: boolean }
  | { type: 'message'; entry?: Entry; label: string; tooltip?: string; icon: string; color?: string; command?: vscode.Command }
  /** The run log's newest runs (runs.ts), and one of them. */
  | { type: 'runs'; entry: Entry }
  | { type: 'run'; entry: Entry; run: RunRecord }
  /** The remote's generations (remote.ts), grouped by kind when it holds several (as the local groups), and one of them. */
  | { type: 'remote'; entry: Entry; remote: RemoteConfigured }
  | { type: 'remoteGroup'; entry: Entry; remote: RemoteConfigured; kind: Kind }
  | { type: 'remoteGeneration'; entry: Entry; remote: RemoteConfigured; storage: string; kind: Kind; gen: RemoteGenerationView; several: boolean };

export type RemoteGenerationNode = Extract<Node, { type: 'remoteGeneration' }>;

export { REMOTE_SHOWN };

export type GenerationNode = Extract<Node, { type: 'generation' }>;

/** Chains a group shows before its "Show older…" row. */
export const NEWEST_CHAINS = 8;

const GROUP_ICONS: Record<Kind, string> = { backup: 'history', snapshot: 'device-camera', zip: 'file-zip' };

export function isGenerationNode(x: unknown): x is GenerationNode {
  return typeof x === 'object' && x !== null && (x as Node).type === 'generation';
}

export function isRemoteGenerationNode(x: unknown): x is RemoteGenerationNode {
  return typeof x === 'object' && x !== null && (x as Node).type === 'remoteGeneration';
}

export function generationArgs(n: GenerationNode): GenerationArgs {
  return { folder: n.entry.root, storage: n.view.storage, kind: n.group.kind, stamp: n.gen.stamp };
}

/** The last transaction, as `"description" by user`. */
export function lastTxn(g: GenerationView): string {
  if (!g.lastDescription && !g.lastUser) return '';
  const desc = g.lastDescription ? `"${g.lastDescription}"` : '(no description)';
  return g.lastUser ? `${desc} by ${g.lastUser.trim()}` : desc;
}

export const BLOB_STATUS_TEXT: Record<GenerationView['blob']['status'], string> = {
  match: 'blob backup complete',
  missing: 'blob backup missing',
  mismatch: 'blob backup lacks files',
  archived: 'blobs in an archive',
  none: 'no blobs in this storage',
  unsafe: 'blob backup refused (not as plone-backup wrote it)',
};

function generationIcon(g: GenerationView): vscode.ThemeIcon {
  if (g.problem) return new vscode.ThemeIcon('error', new vscode.ThemeColor('list.errorForeground'));
  switch (g.blob.status) {
    case 'match':
      return new vscode.ThemeIcon('pass-filled', new vscode.ThemeColor('testing.iconPassed'));
    case 'missing':
    case 'unsafe':
      return new vscode.ThemeIcon('error', new vscode.ThemeColor('list.errorForeground'));
    case 'mismatch':
      return new vscode.ThemeIcon('warning', new vscode.ThemeColor('list.warningForeground'));
    case 'archived':
      return new vscode.ThemeIcon('file-zip', new vscode.ThemeColor('testing.iconPassed'));
    default:
      return new vscode.ThemeIcon('database');
  }
}

function generationTooltip(n: GenerationNode): vscode.MarkdownString {
  const g = n.gen;
  const md = new vscode.MarkdownString(undefined, true);
  const esc = (s: string) => s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
  md.appendMarkdown(`**${esc(localTime(g.stamp))}** (${esc(age(g.stamp))})  \n`);
  md.appendMarkdown(`${g.full ? 'Full' : 'Incremental'} ${KINDS[n.group.kind].noun} of ${esc(n.view.storage)}, stamp \`${g.stamp}\` (UTC)  \n`);
  md.appendMarkdown(
    `${esc(humanBytes(g.diskSize))} on disk, ${esc(humanBytes(g.end - g.start))} of Data.fs (bytes ${g.start}–${g.end}), ${plural(g.transactions, 'transaction')}  \n`,
  );
  if (g.lastTime) md.appendMarkdown(`Last transaction: ${esc(formatLocal(new Date(g.lastTime)))} ${esc(lastTxn(g))}  \n`);
  const b = g.blob;
  let blob = `$(${generationIcon(g).id}) ${BLOB_STATUS_TEXT[b.status]}`;
  if (b.status === 'match' && b.files !== undefined) blob += ` (${plural(b.files, 'file')})`;
  if (b.status === 'mismatch') blob += `: ${b.missingCount} missing, e.g. ${esc(b.missing?.[0] ?? '')}`;
  if (b.status === 'unsafe' && b.problem) blob += `: ${esc(b.problem)}`;
  md.appendMarkdown(`${blob}  \n`);
  if (b.path) md.appendMarkdown(`${esc(b.path)}  \n`);
  if (!g.registered) md.appendMarkdown(`$(warning) not listed in its .dat  \n`);
  if (g.problem) md.appendMarkdown(`$(error) ${esc(g.problem)}  \n`);
  md.appendMarkdown(esc(path.join(n.group.repository, g.name)));
  return md;
}

const runIcon = (r: RunRecord) =>
  r.outcome === 'ok' ? new vscode.ThemeIcon('pass', new vscode.ThemeColor('testing.iconPassed')) : new vscode.ThemeIcon('error', new vscode.ThemeColor('list.errorForeground'));

/** "Last runs": the newest run's outcome and age; failing commands make it an error. */
function runsItem(entry: Entry): vscode.TreeItem {
  const runs = entry.runs!;
  const now = new Date();
  const last = runs.records.at(-1)!;
  const item = new vscode.TreeItem('Last runs', vscode.TreeItemCollapsibleState.Collapsed);
  item.id = `r|${entry.root}`;
  const failing = runs.failing.map((c) => c.command);
  item.description = `${last.command} ${last.outcome === 'ok' ? 'ok' : 'failed'} ${runAgo(last, now)}${failing.length ? ` · failing: ${failing.join(', ')}` : ''}`;
  item.tooltip = `The newest ${Math.min(LAST_RUNS, runs.records.length)} of ${runs.records.length} runs in ${runs.file} (by cron, the CLI or the extension).${runs.problems.length ? `\n${runs.problems.join('\n')}` : ''}`;
  item.iconPath = failing.length ? new vscode.ThemeIcon('error', new vscode.ThemeColor('list.errorForeground')) : new vscode.ThemeIcon('pulse');
  item.contextValue = 'runs';
  item.command = { command: Command.showHistory, title: 'Show Backup History' };
  return item;
}

function runItem(entry: Entry, r: RunRecord): vscode.TreeItem {
  const now = new Date();
  const item = new vscode.TreeItem(`${r.command} ${r.outcome === 'ok' ? 'ok' : 'failed'}`, vscode.TreeItemCollapsibleState.None);
  item.id = `r|${entry.root}|${r.end}|${r.pid}|${r.command}`;
  const sizes = runSizes(r);
  item.description = [runBy(r), runAgo(r, now), ...(sizes ? [sizes] : [])].join(' · ');
  const md = new vscode.MarkdownString(undefined, true);
  const esc = (s: string) => s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
  md.appendMarkdown(`**${esc(runLine(r, now))}**  \n`);
  md.appendMarkdown(`${esc(formatLocal(new Date(r.start)))} to ${esc(formatLocal(new Date(r.end)))} (${r.seconds} s), pid ${r.pid}  \n`);
  md.appendMarkdown(`\`${runCommandLine(r).replace(/`/g, "'")}\``);
  if (r.error) md.appendMarkdown(`  \n$(error) ${esc(r.error.message)} (${esc(r.error.code)})`);
  item.tooltip = md;
  item.iconPath = runIcon(r);
  item.contextValue = `run-${r.outcome}`;
  item.accessibilityInformation = { label: `${r.command} ${r.outcome === 'ok' ? 'succeeded' : `failed: ${r.error?.message ?? ''}`}, ${runAgo(r, now)}, ${runBy(r)}` };
  return item;
}

function remoteGenerationItem(node: RemoteGenerationNode): vscode.TreeItem {
  const g = node.gen;
  const item = new vscode.TreeItem(compactTime(g.stamp), vscode.TreeItemCollapsibleState.None);
  item.id = `rg|${node.entry.root}|${node.storage}|${node.kind}|${g.stamp}`;
  const esc = (s: string) => s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
  const last = g.lastDescription || g.lastUser ? `${g.lastDescription ? `"${g.lastDescription}"` : '(no description)'}${g.lastUser ? ` by ${g.lastUser.trim()}` : ''}` : '';
  if (g.problem) {
    item.description = `${node.several ? `${node.storage} · ` : ''}cannot be used`;
    item.tooltip = g.problem;
    item.iconPath = new vscode.ThemeIcon('error', new vscode.ThemeColor('list.errorForeground'));
    item.contextValue = 'remoteGeneration-bad';
    return item;
  }
  const parts = [
    ...(node.several ? [node.storage] : []),
    g.full ? 'full' : 'incremental',
    ...(g.transactions !== undefined ? [plural(g.transactions, 'transaction')] : []),
    humanBytes(g.end - g.start),
    age(g.stamp),
    ...(last ? [last] : []),
  ];
  item.description = parts.join(' · ');
  const md = new vscode.MarkdownString(undefined, true);
  md.appendMarkdown(`**${esc(localTime(g.stamp))}** (${esc(age(g.stamp))})  \n`);
  md.appendMarkdown(`${g.full ? 'Full' : 'Incremental'} ${KINDS[node.kind].noun} of ${esc(node.storage)} on ${esc(node.remote.url)}, stamp \`${g.stamp}\` (UTC)  \n`);
  md.appendMarkdown(`${esc(humanBytes(g.size))} stored, ${esc(humanBytes(g.end - g.start))} of Data.fs (bytes ${g.start}–${g.end})`);
  if (g.transactions !== undefined) md.appendMarkdown(`, ${plural(g.transactions, 'transaction')}`);
  md.appendMarkdown('  \n');
  if (g.lastTime) md.appendMarkdown(`Last transaction: ${esc(formatLocal(new Date(g.lastTime)))} ${esc(last)}  \n`);
  if (g.blobFiles !== undefined) md.appendMarkdown(`${plural(g.blobFiles, 'blob file')}, ${esc(humanBytes(g.blobBytes ?? 0))}  \n`);
  md.appendMarkdown('Restore from Remote… fetches what the site lacks of it, then restores as from a local backup.');
  item.tooltip = md;
  item.iconPath = new vscode.ThemeIcon(g.full ? 'cloud' : 'cloud-download');
  item.contextValue = 'remoteGeneration';
  item.accessibilityInformation = { label: `${g.full ? 'Full' : 'Incremental'} remote ${KINDS[node.kind].noun} ${localTime(g.stamp)}, ${age(g.stamp)}` };
  return item;
}

export class BackupsTree implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly model: Model,
    /** The remote listings and whether the workspace is trusted (remote.ts); without them no Remote section. */
    private readonly remote?: { listings: RemoteListings; trusted: () => boolean },
  ) {
    this.subscriptions.push(
      model.onDidChange(() => this.emitter.fire(undefined)),
      model.onDidChangeRuns(() => this.emitter.fire(undefined)),
    );
    if (remote) this.subscriptions.push(remote.listings.onDidChange(() => this.emitter.fire(undefined)));
    // Ages ("3 hours ago") move on.
    this.timer = setInterval(() => this.emitter.fire(undefined), 60_000);
  }

  getChildren(node?: Node): Node[] {
    if (!node) return this.roots();
    switch (node.type) {
      case 'deployment':
        return this.ofDeployment(node.entry);
      case 'storage':
        return this.ofStorage(node.entry, node.view);
      case 'group':
        return this.ofGroup(node.entry, node.view, node.group);
      case 'generation':
        return [...node.incrementals].reverse().map((gen) => this.generation(node.entry, node.view, node.group, gen, [], node.newestChain));
      case 'kept': {
        const states = node.entry.kept ?? [];
        return [...states].reverse().map((state, i) => ({ type: 'keptState', entry: node.entry, state, newest: i === 0 }));
      }
      case 'runs':
        return newestRuns(node.entry.runs).map((run) => ({ type: 'run', entry: node.entry, run }));
      case 'remote':
        return this.ofRemote(node.entry, node.remote);
      case 'remoteGroup':
        return this.ofRemoteKind(node.entry, node.remote, node.kind);
      default:
        return [];
    }
  }

  /** The deployment's remote, when one is configured. */
  private remoteOf(entry: Entry): RemoteConfigured | undefined {
    return this.remote ? remoteOf(entry, this.remote.trusted()) : undefined;
  }

  /** The Remote section's rows: the generations (fetched now if not cached: "Loading…" until then), or one row saying what to do. */
  private ofRemote(entry: Entry, remote: RemoteConfigured): Node[] {
    if (!this.remote) return [];
    if (!this.remote.trusted()) {
      return [
        {
          type: 'message',
          entry,
          label: 'Off in Restricted Mode: trust this workspace to list, push to and restore from its remote',
          tooltip: `The workspace names the remote ${remote.url}. Sending your backups there, restoring from there, or even listing it with your credentials is off until you trust the workspace.`,
          icon: 'shield',
          command: { command: 'workbench.trust.manage', title: 'Manage Workspace Trust' },
        },
      ];
    }
    const listing = this.remote.listings.get(entry, remote);
    if (listing.state === 'loading') return [{ type: 'message', entry, label: 'Loading…', icon: 'loading~spin' }];
    if (listing.state === 'error') {
      const todo = whatToDo(listing.error);
      return [
        {
          type: 'message',
          entry,
          label: todo.label,
          tooltip: `${listing.error.userMessage}\nCredentials: ${credentialsWord(listing.credentials)}.`,
          icon: 'error',
          color: 'list.errorForeground',
          command: todo.command ? { command: todo.command, title: todo.label, arguments: [{ folder: entry.root }] } : undefined,
        },
      ];
    }
    const kinds = remoteKinds(listing.views);
    if (kinds.length === 0) {
      return [
        {
          type: 'message',
          entry,
          label: 'Nothing pushed yet: Push Now',
          icon: 'info',
          command: { command: Command.pushNow, title: 'Push Now', arguments: [{ folder: entry.root }] },
        },
      ];
    }
    // Backups, Snapshots, Zip backups as the local view groups them; regular backups alone need no group.
    if (kinds.length === 1) return this.ofRemoteKind(entry, remote, kinds[0]!);
    return kinds.map((kind) => ({ type: 'remoteGroup', entry, remote, kind }));
  }

  /** The remote generations of one kind, newest first, then one row for those not shown (not even read: listRemote's limit). */
  private ofRemoteKind(entry: Entry, remote: RemoteConfigured, kind: Kind): Node[] {
    const listing = this.remote?.listings.peek(entry, remote);
    if (listing?.state !== 'done') return [];
    const gens = remoteGenerations(listing.views, kind);
    const several = severalStorages(listing.views);
    const shown = this.remote?.listings.showsAll(entry.root) ? gens.length : REMOTE_SHOWN;
    const nodes: Node[] = gens.slice(0, shown).map(({ storage, gen }) => ({ type: 'remoteGeneration', entry, remote, storage, kind, gen, several }));
    const more = gens.length - Math.min(gens.length, shown) + remoteOlder(listing.views, kind);
    if (more > 0)
      nodes.push({
        type: 'message',
        entry,
        label: `… and ${plural(more, `older ${KINDS[kind].noun.replace(/^backup$/, 'generation')}`)}`,
        tooltip: `Click to read and show every one (plone-backup list --from ${remote.url} lists them too; Restore from Remote… takes a date).`,
        icon: 'ellipsis',
        command: { command: Command.showOlderRemote, title: 'Show older remote generations', arguments: [{ folder: entry.root }] },
      });
    return nodes;
  }

  private roots(): Node[] {
    const shown = this.model.entries.filter((e) => e.dep || e.error);
    // Nothing found, or nothing backed up yet: the welcome views speak (unless a remote can fill an empty site).
    if (shown.length === 0) return [];
    if (!shown.some((e) => e.error) && !this.model.hasBackups() && !shown.some((e) => this.remoteOf(e))) return [];
    if (shown.length === 1) return this.ofDeployment(shown[0]!);
    return shown.map((entry) => ({ type: 'deployment', entry }));
  }

  private ofDeployment(entry: Entry): Node[] {
    if (entry.error) {
      return [
        {
          type: 'message',
          entry,
          label: entry.error.message,
          tooltip: entry.error.userMessage,
          icon: 'error',
          color: 'list.errorForeground',
          command: { command: Command.openSettings, title: 'Open Settings' },
        },
      ];
    }
    const views = entry.views ?? [];
    // What restores kept beside the live files, last: seen, so it does not pile up unseen.
    const kept: Node[] = entry.kept?.length ? [{ type: 'kept', entry }] : [];
    // The remote's generations, then the newest runs of the run log (cron's too), last.
    const remote = this.remoteOf(entry);
    if (remote) kept.unshift({ type: 'remote', entry, remote });
    if (entry.runs?.records.length) kept.push({ type: 'runs', entry });
    if (views.length === 1) return [...this.ofStorage(entry, views[0]!), ...kept];
    return [...views.map((view): Node => ({ type: 'storage', entry, view })), ...kept];
  }

  private ofStorage(entry: Entry, view: StorageView): Node[] {
    const groups = view.groups.filter((g) => g.chains.length > 0);
    if (groups.length === 0) {
      return [
        {
          type: 'message',
          entry,
          label: 'No backup yet',
          tooltip: 'Back up now',
          icon: 'info',
          command: { command: Command.backup, title: 'Back Up Now', arguments: [{ folder: entry.root }] },
        },
      ];
    }
    return groups.map((group) => ({ type: 'group', entry, view, group }));
  }

  /** Groups whose older chains the user asked to see (Show older…). */
  private readonly showingOlder = new Set<string>();

  /** Show older…: every chain of the group, not just the newest NEWEST_CHAINS. */
  showOlder(key: string): void {
    this.showingOlder.add(key);
    this.emitter.fire(undefined);
  }

  private ofGroup(entry: Entry, view: StorageView, group: GroupView): Node[] {
    const chains = [...group.chains].reverse();
    const key = `${entry.root}|${view.storage}|${group.kind}`;
    // A long history is not a wall: the newest chains, then one row for the rest.
    const shown = this.showingOlder.has(key) ? chains : chains.slice(0, NEWEST_CHAINS);
    const nodes: Node[] = shown.map((c, i) => this.generation(entry, view, group, c.full, c.incrementals, i === 0));
    const hidden = chains.slice(shown.length);
    if (hidden.length) {
      const n = hidden.reduce((k, c) => k + 1 + c.incrementals.length, 0);
      nodes.push({
        type: 'message',
        entry,
        label: `Show older… (${plural(n, 'generation')})`,
        tooltip: `${plural(hidden.length, 'older chain')}, back to ${localTime(hidden.at(-1)!.full.stamp)}`,
        icon: 'ellipsis',
        command: { command: Command.showOlder, title: 'Show older', arguments: [key] },
      });
    }
    return nodes;
  }

  private generation(entry: Entry, view: StorageView, group: GroupView, gen: GenerationView, incrementals: GenerationView[], newestChain: boolean): GenerationNode {
    return {
      type: 'generation',
      entry,
      view,
      group,
      gen,
      incrementals,
      newestChain,
      newestComplete: newestComplete(group)?.stamp === gen.stamp,
      deletable: isDeletable(group, gen),
    };
  }

  getTreeItem(node: Node): vscode.TreeItem {
    switch (node.type) {
      case 'deployment': {
        const item = new vscode.TreeItem(node.entry.name, vscode.TreeItemCollapsibleState.Expanded);
        item.id = `d|${node.entry.root}`;
        item.description = node.entry.dep ? [path.relative(node.entry.root, node.entry.dep.varDir) || '.', scheduleDescription(node.entry)].filter(Boolean).join(' · ') : undefined;
        item.tooltip = node.entry.root;
        item.iconPath = new vscode.ThemeIcon('server-environment');
        item.contextValue = 'deployment';
        return item;
      }
      case 'storage': {
        const item = new vscode.TreeItem(node.view.storage, vscode.TreeItemCollapsibleState.Expanded);
        item.id = `s|${node.entry.root}|${node.view.storage}`;
        item.description = path.relative(node.entry.root, node.view.file);
        item.tooltip = `${node.view.file}${node.view.blobDir ? `\n${node.view.blobDir}` : ''}`;
        item.iconPath = new vscode.ThemeIcon('database');
        item.contextValue = 'storage';
        return item;
      }
      case 'group': {
        const item = new vscode.TreeItem(KINDS[node.group.kind].label, vscode.TreeItemCollapsibleState.Expanded);
        item.id = `g|${node.entry.root}|${node.view.storage}|${node.group.kind}`;
        const n = node.group.chains.reduce((a, c) => a + 1 + c.incrementals.length, 0);
        item.description = `${plural(n, 'generation')} in ${path.relative(node.entry.root, node.group.repository) || node.group.repository}`;
        item.tooltip = `${node.group.repository}${node.group.blobBackups ? `\n${node.group.blobBackups}` : ''}`;
        item.iconPath = new vscode.ThemeIcon(GROUP_ICONS[node.group.kind]);
        item.contextValue = `group-${node.group.kind}`;
        return item;
      }
      case 'generation': {
        const g = node.gen;
        const state =
          node.incrementals.length === 0
            ? vscode.TreeItemCollapsibleState.None
            : node.newestChain
              ? vscode.TreeItemCollapsibleState.Expanded
              : vscode.TreeItemCollapsibleState.Collapsed;
        // Compact: the time (with the day when not today), so kind and size fit a narrow side bar.
        const item = new vscode.TreeItem(compactTime(g.stamp), state);
        // The newest chain's id names its newest incremental: a new backup makes it a new
        // item, which VS Code shows expanded, so the newest backup is always in sight
        // (an item that merely gains children keeps the state it had, collapsed).
        const newestIncr = node.newestChain ? node.incrementals.at(-1)?.stamp : undefined;
        item.id = `x|${node.entry.root}|${node.view.storage}|${node.group.kind}|${g.stamp}${newestIncr ? `|${newestIncr}` : ''}`;
        // The size of the database range it holds, as `plone-backup list` shows it (the tooltip adds the size on disk).
        const live = node.entry.live?.get(node.view.storage) === g.stamp;
        const parts = [...(live ? ['● live'] : []), g.full ? 'full' : 'incremental', plural(g.transactions, 'transaction'), humanBytes(g.end - g.start), age(g.stamp)];
        // The last transaction (for finding a backup by what was done): also in the tooltip.
        const last = lastTxn(g);
        if (last) parts.push(last);
        item.description = parts.join(' · ');
        item.tooltip = generationTooltip(node);
        item.iconPath = generationIcon(g);
        // Delete is offered only where it can succeed (not for what the newest complete generation needs).
        item.contextValue = node.deletable ? 'generation' : 'generation-kept';
        item.accessibilityInformation = {
          label: `${g.full ? 'Full' : 'Incremental'} ${KINDS[node.group.kind].noun} ${localTime(g.stamp)}, ${age(g.stamp)}, ${BLOB_STATUS_TEXT[g.blob.status]}`,
        };
        return item;
      }
      case 'kept': {
        const states = node.entry.kept ?? [];
        const item = new vscode.TreeItem('Kept copies', vscode.TreeItemCollapsibleState.Collapsed);
        item.id = `k|${node.entry.root}`;
        item.description = `${states.length} · ${humanBytes(states.reduce((n, k) => n + k.bytes, 0))}`;
        item.tooltip =
          'The states that restores replaced, kept beside the live files (*.before-restore-*). Undo Last Restore puts the newest back; delete them when they are no longer needed. Kept blob trees are mostly hard links that share the live files.';
        item.iconPath = new vscode.ThemeIcon('archive');
        item.contextValue = 'kept-all';
        return item;
      }
      case 'keptState': {
        const k = node.state;
        const when = /^\d{4}(-\d\d){5}$/.test(k.stamp) ? localTime(k.stamp) : k.stamp;
        const item = new vscode.TreeItem(`before the restore of ${when}`, vscode.TreeItemCollapsibleState.None);
        item.id = `k|${node.entry.root}|${k.stamp}`;
        item.description = `${humanBytes(k.bytes)}${node.newest ? ' · Undo Last Restore puts it back' : ''}`;
        item.tooltip = k.storages.flatMap((x) => [x.file, x.index, x.blobDir].filter((p): p is string => !!p)).join('\n');
        item.iconPath = new vscode.ThemeIcon(node.newest ? 'discard' : 'history');
        item.contextValue = node.newest ? 'kept-newest' : 'kept-state';
        return item;
      }
      case 'runs':
        return runsItem(node.entry);
      case 'run':
        return runItem(node.entry, node.run);
      case 'remote':
        return this.remoteItem(node);
      case 'remoteGroup':
        return this.remoteGroupItem(node);
      case 'remoteGeneration':
        return remoteGenerationItem(node);
      default: {
        const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
        item.tooltip = node.tooltip;
        item.iconPath = new vscode.ThemeIcon(node.icon, node.color ? new vscode.ThemeColor(node.color) : undefined);
        item.command = node.command;
        item.contextValue = 'message';
        return item;
      }
    }
  }

  /**
   * The parent of a node (TreeView.reveal needs it): found by walking down from
   * the roots to the node with the same id, since nodes are made afresh on every
   * getChildren. The tree is small (one node per generation).
   */
  getParent(node: Node): Node | undefined {
    const id = this.getTreeItem(node).id;
    if (!id) return undefined;
    const walk = (parent: Node | undefined): Node | undefined | null => {
      for (const c of this.getChildren(parent)) {
        if (this.getTreeItem(c).id === id) return parent;
        if (c.type === 'message') continue;
        // The remote's rows are fetched only when a person expands the section.
        if (c.type === 'remote') {
          if (node.entry?.root !== c.entry.root) continue;
          if (node.type === 'remoteGroup') return c;
          if (node.type === 'remoteGeneration') {
            const listing = this.remote?.listings.peek(c.entry, c.remote);
            const grouped = listing?.state === 'done' && remoteKinds(listing.views).length > 1;
            return grouped ? { type: 'remoteGroup', entry: c.entry, remote: c.remote, kind: node.kind } : c;
          }
          continue;
        }
        const found = walk(c);
        if (found !== null) return found;
      }
      return null;
    };
    return walk(undefined) ?? undefined;
  }

  /** The node of a generation, as the view shows it. */
  findGeneration(root: string, storage: string, kind: Kind, stamp: string): GenerationNode | undefined {
    return this.allGenerations().find((g) => g.entry.root === root && g.view.storage === storage && g.group.kind === kind && g.gen.stamp === stamp);
  }

  /** Every generation node, depth first (for tests and pickers). */
  allGenerations(): GenerationNode[] {
    const out: GenerationNode[] = [];
    const walk = (nodes: Node[]) => {
      for (const n of nodes) {
        if (n.type === 'generation') out.push(n);
        if (n.type !== 'remote') walk(this.getChildren(n));
      }
    };
    walk(this.getChildren());
    return out;
  }

  /** The Remote section's row of a deployment, when it has a remote. */
  findRemote(root: string): Extract<Node, { type: 'remote' }> | undefined {
    const walk = (nodes: Node[]): Extract<Node, { type: 'remote' }> | undefined => {
      for (const n of nodes) {
        if (n.type === 'remote' && n.entry.root === root) return n;
        if (n.type === 'deployment' || n.type === 'storage') {
          const found = walk(this.getChildren(n));
          if (found) return found;
        }
      }
      return undefined;
    };
    return walk(this.getChildren());
  }

  /** A kind's group in the Remote section (when the remote holds several kinds). */
  private remoteGroupItem(node: Extract<Node, { type: 'remoteGroup' }>): vscode.TreeItem {
    const item = new vscode.TreeItem(KINDS[node.kind].label, vscode.TreeItemCollapsibleState.Expanded);
    item.id = `rgrp|${node.entry.root}|${node.kind}`;
    const listing = this.remote?.listings.peek(node.entry, node.remote);
    if (listing?.state === 'done') item.description = plural(remoteGenerations(listing.views, node.kind).length + remoteOlder(listing.views, node.kind), 'generation');
    item.tooltip = `The ${KINDS[node.kind].noun}s pushed to ${node.remote.url}; Restore from Remote… on one restores it as ${KINDS[node.kind].restoreCommand} does.`;
    item.iconPath = new vscode.ThemeIcon(GROUP_ICONS[node.kind]);
    item.contextValue = `remoteGroup-${node.kind}`;
    return item;
  }

  private remoteItem(node: Extract<Node, { type: 'remote' }>): vscode.TreeItem {
    const item = new vscode.TreeItem('Remote', vscode.TreeItemCollapsibleState.Collapsed);
    item.id = `rm|${node.entry.root}`;
    const listing = this.remote?.trusted() ? this.remote.listings.peek(node.entry, node.remote) : undefined;
    const n = listing?.state === 'done' ? remoteGenerations(listing.views).length + remoteOlder(listing.views) : undefined;
    item.description = [node.remote.url, ...(n !== undefined ? [plural(n, 'generation')] : [])].join(' · ');
    const creds = listing && listing.state !== 'loading' ? credentialsWord(listing.credentials) : undefined;
    item.tooltip = [
      `${node.remote.url}${node.remote.endpoint ? ` at ${node.remote.endpoint}` : ''}`,
      `From ${node.remote.from === 'setting' ? 'the setting ploneBackup.remote.url' : 'plone-backup.json'}.`,
      ...(creds ? [`Credentials: ${creds}.`] : []),
      'Listed when expanded, then kept until Refresh.',
    ].join('\n');
    item.iconPath = new vscode.ThemeIcon('cloud');
    item.contextValue = 'remote';
    return item;
  }

  dispose(): void {
    clearInterval(this.timer);
    for (const s of this.subscriptions) s.dispose();
    this.emitter.dispose();
  }
}
