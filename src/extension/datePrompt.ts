/**
 * The "Type a date…" step of a restore (the local one and the one from the
 * remote): an input box for a local date whose message previews, as the user
 * types, which backup Enter restores, or says there is none before it.
 */
import * as vscode from 'vscode';
import { localDateArg, toPloneBackupError } from '../engine';

export interface DatePromptOptions {
  title: string;
  prompt: string;
  placeHolder?: string;
  /** What a restore to `date` (a repozo date) takes, in words; undefined when no backup is before it. */
  preview(date: string): string | undefined;
  /** The error shown when no backup is before `date`. */
  none(date: string): string;
}

/** The repozo date typed, or undefined when the box was dismissed. */
export async function askRestoreDate(o: DatePromptOptions): Promise<string | undefined> {
  const typed = await vscode.window.showInputBox({
    title: o.title,
    prompt: o.prompt,
    placeHolder: o.placeHolder,
    validateInput: (v) => {
      if (!v.trim()) return undefined;
      let date: string;
      try {
        date = localDateArg(v);
      } catch (e) {
        return toPloneBackupError(e).userMessage;
      }
      const p = o.preview(date);
      if (!p) return { message: o.none(date), severity: vscode.InputBoxValidationSeverity.Error };
      return { message: `→ ${p}`, severity: vscode.InputBoxValidationSeverity.Info };
    },
  });
  return typed ? localDateArg(typed) : undefined;
}
