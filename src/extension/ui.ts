/**
 * Running engine operations from the UI: a cancellable progress notification
 * whose Cancel (or the caller's own signal or token) aborts the engine through
 * an AbortSignal, progress messages from the engine's onProgress, and results
 * and failures as notifications with the engine's one-sentence userMessage,
 * the details in the "Plone Backup" output channel.
 */

import * as vscode from 'vscode';
import { toPloneBackupError, type PloneBackupError, type Progress } from '../engine';
import type { Outcome, RunArgs } from './commands';

export class Ui {
  constructor(readonly output: vscode.LogOutputChannel) {}

  /**
   * Runs `fn` under a progress notification. Cancellation reaches `fn` as an
   * aborted signal; the engine stops and removes what it had half-written.
   */
  async run<T>(title: string, args: RunArgs | undefined, fn: (signal: AbortSignal, onProgress: (p: Progress) => void) => Promise<T>): Promise<Outcome<T>> {
    const ac = new AbortController();
    const disposables: vscode.Disposable[] = [];
    const cancel = (why: string) => {
      if (!ac.signal.aborted) {
        this.output.info(`${title}: cancelled (${why})`);
        ac.abort();
      }
    };
    if (args?.signal) {
      if (args.signal.aborted) cancel('by the caller');
      else args.signal.addEventListener('abort', () => cancel('by the caller'), { once: true });
    }
    if (args?.token) {
      if (args.token.isCancellationRequested) cancel('by the caller');
      else disposables.push(args.token.onCancellationRequested(() => cancel('by the caller')));
    }
    this.output.info(`${title}…`);
    const started = Date.now();
    try {
      if (ac.signal.aborted) return this.cancelled(title);
      const value = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
        disposables.push(token.onCancellationRequested(() => cancel('Cancel was clicked')));
        let last = 0;
        const onProgress = (p: Progress) => {
          const now = Date.now();
          if (now - last < 100) return;
          last = now;
          const pct = p.total ? ` ${Math.min(100, Math.floor((p.done / p.total) * 100))}%` : '';
          progress.report({ message: `${p.phase}${pct}` });
        };
        return fn(ac.signal, onProgress);
      });
      this.output.info(`${title}: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return { status: 'done', value };
    } catch (e) {
      const err = toPloneBackupError(e);
      if (err.code === 'ABORTED' || ac.signal.aborted) return this.cancelled(title);
      return this.failed(title, err);
    } finally {
      for (const d of disposables) d.dispose();
    }
  }

  private cancelled(title: string): Outcome<never> {
    this.output.info(`${title}: cancelled; nothing was changed.`);
    void vscode.window.showInformationMessage(`${title}: cancelled; nothing was changed.`);
    return { status: 'cancelled' };
  }

  /** Shows a failure (the engine's sentence), logs the details, and returns it as an outcome. */
  failed(title: string, e: unknown): Outcome<never> {
    const err: PloneBackupError = toPloneBackupError(e);
    this.output.error(`${title} failed: [${err.code}] ${err.message}`);
    if (err.hint) this.output.error(`  hint: ${err.hint}`);
    if (err.path) this.output.error(`  path: ${err.path}`);
    const cause = (err.cause as Error | undefined)?.stack ?? (err.code === 'IO' ? err.stack : undefined);
    if (cause) this.output.error(`  ${cause}`);
    void vscode.window.showErrorMessage(err.userMessage, 'Show Output').then((c) => {
      if (c) this.output.show(true);
    });
    return { status: 'failed', code: err.code, message: err.userMessage };
  }

  info(message: string, ...actions: { title: string; run: () => unknown }[]): void {
    this.output.info(message);
    void vscode.window.showInformationMessage(message, ...actions.map((a) => a.title)).then((c) => actions.find((a) => a.title === c)?.run());
  }

  warn(message: string, ...actions: { title: string; run: () => unknown }[]): void {
    this.output.warn(message);
    void vscode.window.showWarningMessage(message, ...actions.map((a) => a.title)).then((c) => actions.find((a) => a.title === c)?.run());
  }

  error(message: string, ...actions: { title: string; run: () => unknown }[]): void {
    this.output.error(message);
    void vscode.window.showErrorMessage(message, ...actions.map((a) => a.title)).then((c) => actions.find((a) => a.title === c)?.run());
  }
}
