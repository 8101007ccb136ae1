// The extension is installed in the host, activates, and its commands work.
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';

const EXTENSION_ID = 'plone-backup.plone-backup'; // publisher.name in package.json

suite('Extension activation', () => {
  test('is present, activates and registers ploneBackup.refresh', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `extension ${EXTENSION_ID} is not loaded in the host`);
    await ext.activate();
    assert.equal(ext.isActive, true);
    const commands = await vscode.commands.getCommands(true);
    assert.ok(commands.includes('ploneBackup.refresh'), 'ploneBackup.refresh is not registered');
  });

  test('ploneBackup.refresh runs without throwing', async () => {
    await vscode.commands.executeCommand('ploneBackup.refresh');
  });

  test('the test workspace is open and named in PLONE_BACKUP_TEST_WORKSPACE', () => {
    const expected = process.env.PLONE_BACKUP_TEST_WORKSPACE;
    assert.ok(expected, 'PLONE_BACKUP_TEST_WORKSPACE is not set in the extension host');
    const folders = vscode.workspace.workspaceFolders ?? [];
    assert.equal(folders.length, 1, 'expected exactly one workspace folder');
    assert.equal(folders[0].uri.fsPath, expected);
  });
});
