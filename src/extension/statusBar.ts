/**
 * The status bar item: how old the newest backup is, on a warning background
 * when it is older than `ploneBackup.statusBar.warnAfterHours` (or when there
 * is none). Hidden when the workspace holds no deployment.
 */

import * as vscode from 'vscode';
import { formatDistanceToNow } from 'date-fns';
import { VIEW_ID } from './commands';
import { generationsOf, type Model } from './model';
import { localTime } from '../engine';
import { warnAfterHours } from './settings';

export class BackupStatus implements vscode.Disposable {
  readonly item = vscode.window.createStatusBarItem('ploneBackup.status', vscode.StatusBarAlignment.Left, 10);
  private readonly timer: NodeJS.Timeout;
  private readonly subscriptions: vscode.Disposable[] = [];
  /** Whether the newest backup is older than the setting (or missing); for tests. */
  stale = false;

  constructor(private readonly model: Model) {
    this.item.name = 'Plone Backup';
    this.item.command = `${VIEW_ID}.focus`;
    this.subscriptions.push(
      model.onDidChange(() => this.update()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('ploneBackup.statusBar')) this.update();
      }),
    );
    this.timer = setInterval(() => this.update(), 60_000);
    this.update();
  }

  update(): void {
    if (this.model.deployments.length === 0) {
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
    this.item.backgroundColor = this.stale ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.item.show();
  }

  dispose(): void {
    clearInterval(this.timer);
    for (const s of this.subscriptions) s.dispose();
    this.item.dispose();
  }
}
