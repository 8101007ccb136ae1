// Desktop entry for the in-host extension tests, with @vscode/test-electron.
// It downloads a desktop VS Code into .vscode-test/, so it needs internet and a
// display (or xvfb-run). CI and offline machines use scripts/vscode/run-offline.mjs,
// which runs the same suite (test/extension/suite/index.ts) in code-server.
//
//   npm run pretest && node out/test/extension/runTest.js [workspace-folder]
//
// The workspace folder defaults to an empty temporary folder; its path reaches
// the tests as PLONE_BACKUP_TEST_WORKSPACE.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runTests } from '@vscode/test-electron';

async function main(): Promise<void> {
  // out/test/extension/runTest.js -> repository root
  const extensionDevelopmentPath = path.resolve(__dirname, '../../..');
  const extensionTestsPath = path.resolve(__dirname, 'suite/index');

  const given = process.argv[2] ?? process.env.PLONE_BACKUP_TEST_WORKSPACE;
  const tempWorkspace = given ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'plone-backup-ws-'));
  const workspace = path.resolve(given ?? tempWorkspace!);

  try {
    await runTests({
      version: process.env.VSCODE_TEST_VERSION ?? '1.100.3',
      extensionDevelopmentPath,
      extensionTestsPath,
      // The test hooks (src/extension/safety.ts): only this suite's host gets them.
      extensionTestsEnv: { PLONE_BACKUP_TEST_WORKSPACE: workspace, PLONE_BACKUP_TEST_HOOKS: '1' },
      launchArgs: [workspace, '--disable-extensions', '--disable-workspace-trust', '--skip-welcome'],
    });
  } finally {
    if (tempWorkspace) fs.rmSync(tempWorkspace, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error('Extension tests failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
