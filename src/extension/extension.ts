// Minimal Plone Backup extension: placeholder until the real one lands.
// Registers `ploneBackup.refresh`, which logs to the "Plone Backup" output channel.
import * as vscode from 'vscode';

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('Plone Backup');
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand('ploneBackup.refresh', () => {
      output.appendLine(`[${new Date().toISOString()}] refresh`);
    }),
  );
}

export function deactivate(): void {}
