// In-host test entry: VS Code loads this file inside the extension host (via
// extensionTestsPath) and awaits `run()`. The same file serves the offline runner
// (scripts/vscode/run-offline.mjs: code-server + headless Chromium) and
// @vscode/test-electron (test/extension/runTest.ts).
//
// Runs every `*.test.js` under this folder with mocha (tdd UI: suite/test),
// then prints a closing line `N passed, N failed` that CI counts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(p));
    else if (entry.name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

export function run(): Promise<void> {
  const mocha = new Mocha({
    ui: 'tdd',
    color: false,
    reporter: 'spec',
    timeout: Number(process.env.PLONE_BACKUP_TEST_TIMEOUT_MS) || 30_000,
    grep: process.env.PLONE_BACKUP_TEST_GREP || undefined,
  });
  for (const file of findTests(__dirname)) mocha.addFile(file);

  return new Promise<void>((resolve, reject) => {
    try {
      const runner = mocha.run((failures) => {
        const stats = runner.stats;
        const passed = stats?.passes ?? 0;
        const failed = Math.max(stats?.failures ?? 0, failures);
        console.log(`${passed} passed, ${failed} failed`);
        if (failed > 0) reject(new Error(`${failed} extension test(s) failed`));
        else resolve();
      });
    } catch (err) {
      console.error(err);
      console.log('0 passed, 1 failed');
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}
