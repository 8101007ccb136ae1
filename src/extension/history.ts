/**
 * Plone Backup: Show Backup History: a webview panel drawing every
 * deployment's generations on a time axis, the Data.fs size and transactions
 * over time, gaps, failed runs and drills. A thin shell: the data is
 * historyModel.ts, the page historyChart.ts (both without vscode), the page's
 * script media/history.js. It is drawn again when the listing or the run log
 * changes.
 *
 * A message from the page is input from elsewhere: only `reveal` and
 * `restore` of a generation the Backups view lists are acted on, by running
 * the extension's own commands (Show in Backups View; Restore…, with its
 * usual confirmation, whatever the page sends).
 */

import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import { KIND_ORDER, formatLocal, isStamp, type Kind } from '../engine';
import { Command, type GenerationArgs, type HistoryResult, type Outcome, type RestoreArgs } from './commands';
import type { Model } from './model';
import { historyData, pointCount, scheduleSeconds, type HistoryData } from './historyModel';
import { historyPage } from './historyChart';

export const HISTORY_VIEW_TYPE = 'ploneBackup.history';
/** How long listing and run log changes settle before the page is drawn again. */
const REDRAW_MS = 300;

/** A message the page may send. */
export interface HistoryMessage {
  type: 'reveal' | 'restore' | 'ready';
  root?: string;
  storage?: string;
  kind?: Kind;
  stamp?: string;
}

export class HistoryPanel implements vscode.Disposable {
  panel?: vscode.WebviewPanel;
  /** What the page shows now (for tests). */
  data?: HistoryData;
  private timer?: NodeJS.Timeout;
  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly received = new vscode.EventEmitter<HistoryMessage>();
  /** A message from the page was handled (for tests). */
  readonly onDidReceive = this.received.event;

  constructor(
    private readonly model: Model,
    private readonly extensionUri: vscode.Uri,
    private readonly log: vscode.LogOutputChannel,
  ) {
    const soon = () => {
      if (!this.panel) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.render(), REDRAW_MS);
    };
    this.subscriptions.push(model.onDidChange(soon), model.onDidChangeRuns(soon));
  }

  async show(): Promise<Outcome<HistoryResult>> {
    await this.model.ready();
    if (this.panel) this.panel.reveal();
    else {
      const media = vscode.Uri.joinPath(this.extensionUri, 'media');
      this.panel = vscode.window.createWebviewPanel(HISTORY_VIEW_TYPE, 'Backup History', vscode.ViewColumn.Active, {
        enableScripts: true,
        enableFindWidget: true,
        localResourceRoots: [media],
      });
      this.panel.iconPath = vscode.Uri.joinPath(media, 'plone-backup.svg');
      this.panel.webview.onDidReceiveMessage((m) => void this.receive(m));
      this.panel.onDidDispose(() => {
        this.panel = undefined;
        clearTimeout(this.timer);
      });
    }
    this.render();
    const d = this.data!;
    return { status: 'done', value: { points: pointCount(d), runs: d.sections.reduce((n, s) => n + s.runs.length, 0) } };
  }

  /** The data of every deployment, now. */
  compute(): HistoryData {
    // Gaps are measured against the installed schedule when there is one (Schedule Backups…).
    const inputs = this.model.deployments.map((e) => ({
      root: e.root,
      name: e.name,
      views: e.views ?? [],
      runs: e.runs?.records ?? [],
      live: e.live,
      scheduleSeconds: scheduleSeconds(e.schedules),
    }));
    return historyData(inputs, new Date());
  }

  private render(): void {
    if (!this.panel) return;
    const webview = this.panel.webview;
    const media = vscode.Uri.joinPath(this.extensionUri, 'media');
    this.data = this.compute();
    webview.html = historyPage(
      this.data,
      {
        cspSource: webview.cspSource,
        nonce: randomBytes(16).toString('base64'),
        scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(media, 'history.js')).toString(),
        styleUri: webview.asWebviewUri(vscode.Uri.joinPath(media, 'history.css')).toString(),
        restore: vscode.workspace.isTrusted,
      },
      { time: (ms) => formatLocal(new Date(ms)), tick: (ms, day) => formatLocal(new Date(ms)).slice(day ? 0 : 11, day ? 10 : 16) },
    );
  }

  /** Handles a message from the page (also called by the in-host tests, as the page would). */
  async receive(raw: unknown): Promise<Outcome<unknown> | undefined> {
    const m = raw as HistoryMessage;
    if (typeof m !== 'object' || m === null || (m.type !== 'reveal' && m.type !== 'restore')) return undefined;
    // Only a generation the extension lists: the page's words are not trusted further than that.
    const entry = this.model.deployments.find((e) => e.root === m.root);
    const ok =
      !!entry &&
      typeof m.stamp === 'string' &&
      isStamp(m.stamp) &&
      KIND_ORDER.includes(m.kind as Kind) &&
      (entry.views ?? []).some(
        (v) => v.storage === m.storage && v.groups.some((g) => g.kind === m.kind && g.chains.some((c) => [c.full, ...c.incrementals].some((x) => x.stamp === m.stamp))),
      );
    if (!entry || !ok) {
      this.log.warn(`Backup History: ignored a message about a generation the Backups view does not list: ${JSON.stringify(m).slice(0, 300)}`);
      return undefined;
    }
    let out: Outcome<unknown>;
    if (m.type === 'reveal') {
      const args: GenerationArgs = { folder: entry.root, storage: m.storage, kind: m.kind, stamp: m.stamp! };
      out = await vscode.commands.executeCommand<Outcome<unknown>>(Command.revealGeneration, args);
      // Back to the page, so its Restore… button is one click away.
      this.panel?.reveal(undefined, true);
    } else {
      // The usual Restore: its confirmation and safety checks; nothing here can skip them.
      const args: RestoreArgs = { folder: entry.root, kind: m.kind, stamp: m.stamp };
      out = await vscode.commands.executeCommand<Outcome<unknown>>(Command.restore, args);
    }
    this.received.fire(m);
    return out;
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const s of this.subscriptions) s.dispose();
    this.received.dispose();
    this.panel?.dispose();
  }
}
