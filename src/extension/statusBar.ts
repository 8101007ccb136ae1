/**
 * The status bar item: how old the newest backup is, on a warning background
 * when it is older than `ploneBackup.statusBar.warnAfterHours` (or when there
 * is none), and the last run from the run log (by anyone: cron, the CLI, the
 * extension). A command whose last run failed (and none succeeded since, as
 * `plone-backup status` decides) turns it into an error: the error background,
 * the message and the command in the tooltip, and a click opens the Backup
 * History. Hidden when the workspace holds no deployment.
 */

import * as vscode from 'vscode';
import { formatDistanceToNow } from 'date-fns';
import { Command, VIEW_ID } from './commands';
import { generationsOf, type Model } from './model';
import { formatLocal, localTime } from '../engine';
import { lastRunSuffix, runAgo, runBy, runCommandLine, runLine, summarizeRuns } from './runs';
import { warnAfterHours } from './settings';

export class BackupStatus implements vscode.Disposable {
  readonly item = vscode.window.createStatusBarItem('ploneBackup.status', vscode.StatusBarAlignment.Left, 10);
  private readonly timer: NodeJS.Timeout;
  private readonly subscriptions: vscode.Disposable[] = [];
  /** Whether the newest backup is older than the setting (or missing); for tests. */
  stale = false;
  /** Whether a command's last run failed (the error state); for tests. */
  failing = false;

  constructor(private readonly model: Model) {
    this.item.name = 'Plone Backup';
    this.item.command = `${VIEW_ID}.focus`;
    this.subscriptions.push(
      model.onDidChange(() => this.update()),
      model.onDidChangeRuns(() => this.update()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('ploneBackup.statusBar')) this.update();
      }),
    );
    this.timer = setInterval(() => this.update(), 60_000);
    this.update();
  }

  update(): void {
    if (this.model.deployments.length === 0) {
      this.failing = false;
      this.item.hide();
      return;
    }
    const hours = warnAfterHours();
    const newest = generationsOf(this.model.entries).sort((a, b) => b.date.getTime() - a.date.getTime())[0];
    if (!newest) {
      this.stale = true;
      this.item.text = '$(database) No backup';
      this.item.tooltip = 'Plone Backup: this site has no backup yet. Click to show the Backups view.';
    } else {
      this.stale = Date.now() - newest.date.getTime() > hours * 3600_000;
      const ago = formatDistanceToNow(newest.date, { addSuffix: true });
      this.item.text = `$(database) Backup ${ago}`;
      const where = this.model.deployments.length > 1 ? ` of ${newest.entry.name}` : '';
      this.item.tooltip = new vscode.MarkdownString(
        `Plone Backup: the newest backup${where} (${newest.view.storage}) is from ${localTime(newest.gen.stamp)}, ${ago}.` +
          (this.stale ? `\n\n$(warning) That is more than ${hours} hours ago.` : ''),
        true,
      );
    }
    this.showRuns(newest?.gen.stamp);
    this.item.backgroundColor = this.failing
      ? new vscode.ThemeColor('statusBarItem.errorBackground')
      : this.stale
        ? new vscode.ThemeColor('statusBarItem.warningBackground')
        : undefined;
    this.item.show();
  }

  /** The run log's part: the last run beside the age, or the failures over everything. */
  private showRuns(newestStamp: string | undefined): void {
    const now = new Date();
    const many = this.model.deployments.length > 1;
    const sum = summarizeRuns(this.model.deployments.map((e) => ({ name: e.name, runs: e.runs })));
    const base = this.item.tooltip instanceof vscode.MarkdownString ? this.item.tooltip.value : String(this.item.tooltip ?? '');
    const md = new vscode.MarkdownString('', true);
    const esc = (s: string) => s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
    this.failing = sum.failing.length > 0;
    if (this.failing) {
      const first = sum.failing[0]!.value;
      this.item.text = `$(error) ${first.command} failed ${runAgo(first, now)}${sum.failing.length > 1 ? ` (+${sum.failing.length - 1})` : ''}`;
      for (const { name, value: r } of sum.failing) {
        md.appendMarkdown(
          `$(error) **${esc(r.command)} failed**${many ? ` in ${esc(name)}` : ''} ${esc(runAgo(r, now))}, ${esc(formatLocal(new Date(r.end)))} (${esc(runBy(r))})  \n`,
        );
        md.appendMarkdown(`${esc(r.error?.message ?? 'No reason was recorded.')}${r.error?.code ? ` (${esc(r.error.code)})` : ''}  \n`);
        md.appendMarkdown(`Command: \`${runCommandLine(r).replace(/`/g, "'")}\`\n\n`);
      }
      md.appendMarkdown(`${base}\n\nClick to show the backup history.`);
      this.item.tooltip = md;
      this.item.command = Command.showHistory;
      this.item.accessibilityInformation = { label: `Plone Backup: ${first.command} failed: ${first.error?.message ?? ''}` };
      return;
    }
    this.item.command = `${VIEW_ID}.focus`;
    this.item.accessibilityInformation = undefined;
    const last = sum.last?.value;
    const suffix = lastRunSuffix(last, newestStamp, now);
    if (suffix) this.item.text += ` · ${suffix}`;
    if (!last && !sum.problems.length) return;
    md.appendMarkdown(base);
    if (last) md.appendMarkdown(`\n\nLast run${many ? ` (${esc(sum.last!.name)})` : ''}: ${esc(runLine(last, now))}`);
    for (const p of sum.problems) md.appendMarkdown(`\n\n$(warning) The run log cannot be read: ${esc(p.value)}`);
    this.item.tooltip = md;
  }

  dispose(): void {
    clearInterval(this.timer);
    for (const s of this.subscriptions) s.dispose();
    this.item.dispose();
  }
}
