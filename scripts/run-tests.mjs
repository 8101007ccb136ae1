// The project's one test command (`npm test`): the engine, CLI and deployment
// tests under node's test runner, then the extension tests in a real VS Code
// (offline: code-server + headless Chromium; see scripts/vscode/).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function findTests(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

const only = process.argv.slice(2);
const suites = only.length ? only : ['unit', 'extension'];
let failed = false;
// What failed, printed again at the end: a CI log is often read from its tail.
const summary = [];

if (suites.includes('unit')) {
  // extension/unit: the extension's modules without vscode (the in-host suite is test/extension/suite).
  const files = ['engine', 'cli', 'deploy', 'fault', 'remote', join('extension', 'unit')].flatMap((d) => findTests(join('out', 'test', d)));
  const dir = mkdtempSync(join(tmpdir(), 'plone-backup-node-tests-'));
  const list = join(dir, 'failures.txt');
  try {
    const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=./scripts/test-failures.mjs', `--test-reporter-destination=${list}`];
    const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...reporters, ...files], { stdio: 'inherit' });
    if (r.status !== 0) {
      failed = true;
      const lines = existsSync(list) ? readFileSync(list, 'utf8').split('\n').filter(Boolean) : [];
      summary.push(`node tests: FAILED (exit ${r.status ?? r.signal})`, ...lines.map((l) => `  ${l}`));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (suites.includes('extension') && existsSync('scripts/vscode/run-offline.mjs')) {
  // Four steps, each in a fresh code-server (scripts/vscode/run-offline.mjs):
  //   1. package: the esbuild bundle and `vsce package` into a temp .vsix;
  //   2. the in-host suite (test/extension/suite) against the bundle;
  //   3. the .vsix installed into code-server, and the activation suite against it;
  //   4. the UI tests, user journeys through the real workbench (test/extension/ui/):
  //      backup-now.mjs (its screenshot in the temp folder); outside-consent.mjs, the real
  //      consent dialog for paths outside the workspace; restore-journeys.mjs, Restore… with
  //      Cancel, a picked generation and a typed local date, code-server in Europe/Berlin (the
  //      script's `export const tz`); newest-visible.mjs, a backup by the CLI shows up in sight;
  //      nested-site.mjs, a cookieplone backend/instance found and backed up; undo-restore.mjs,
  //      a restore undone from its notification, the kept copies deleted, Undo Last Restore with
  //      nothing kept; quick-fix.mjs, a deleted blob file in the Problems panel, put back by its
  //      Quick Fix; history.mjs, the Backup History webview, a click on a point revealing its
  //      generation; remote.mjs, a dev site filled from production's remote (a real S3 server):
  //      the credentials typed in, Remote expanded, Restore from Remote… twice (the second incremental).
  // Only step 2 runs with the test hooks (PLONE_BACKUP_TEST_HOOKS=1, set by run-offline.mjs):
  // the .vsix and the UI see the extension as users do.
  // The compiled tests (out/) are rebuilt first when a source is newer than them.
  const newest = (dir) => {
    let t = 0;
    if (!existsSync(dir)) return t;
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = statSync(p);
      t = Math.max(t, st.isDirectory() ? newest(p) : name.endsWith('.ts') ? st.mtimeMs : 0);
    }
    return t;
  };
  const suiteIndex = join('out', 'test', 'extension', 'suite', 'index.js');
  const step = (name, cmd, args, env = {}) => {
    process.stderr.write(`\n[extension tests] ${name}\n`);
    const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });
    if (r.status !== 0) {
      failed = true;
      process.stderr.write(`[extension tests] ${name}: FAILED (exit ${r.status ?? r.signal})\n`);
      summary.push(`extension tests, ${name}: FAILED (exit ${r.status ?? r.signal})`);
    }
    return r.status === 0;
  };
  if (!existsSync(suiteIndex) || Math.max(newest('src'), newest(join('test', 'extension'))) > statSync(suiteIndex).mtimeMs) {
    // tsc still writes its output when other parts of the tree have type errors.
    spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.test.json'], { stdio: 'inherit' });
  }
  const tmp = mkdtempSync(join(tmpdir(), 'plone-backup-extension-tests-'));
  try {
    const vsix = join(tmp, 'plone-backup.vsix');
    const packaged = step('package (esbuild + vsce)', 'npm', ['run', '--silent', 'package', '--', '--out', vsix]);
    // The whole suite in one budget: the remote suite starts a real S3 server (test/support/s3.ts) and
    // pushes and restores through it, which takes the suite past run-offline's default of 180 s.
    step('in-host suite', process.execPath, ['scripts/vscode/run-offline.mjs'], { PLONE_BACKUP_TEST_TIMEOUT: process.env.PLONE_BACKUP_TEST_TIMEOUT || '1200' });
    if (packaged) step('the .vsix installed and activated', process.execPath, ['scripts/vscode/run-offline.mjs', '--vsix', vsix]);
    step('UI: Back Up Now from the palette', process.execPath, ['scripts/vscode/run-offline.mjs', '--ui', 'test/extension/ui/backup-now.mjs'], {
      PLONE_BACKUP_UI_SCREENSHOT: join(tmp, 'screenshot-backups.png'),
    });
    step('UI: the consent dialog for paths outside the workspace', process.execPath, ['scripts/vscode/run-offline.mjs', '--ui', 'test/extension/ui/outside-consent.mjs']);
    step('UI: Restore… (Cancel, a picked generation, a typed local date) in Europe/Berlin', process.execPath, [
      'scripts/vscode/run-offline.mjs',
      '--ui',
      'test/extension/ui/restore-journeys.mjs',
    ]);
    step('UI: a backup made by the CLI shows up in sight', process.execPath, ['scripts/vscode/run-offline.mjs', '--ui', 'test/extension/ui/newest-visible.mjs'], {
      PLONE_BACKUP_UI_SCREENSHOT_DIR: tmp,
    });
    step('UI: a site in backend/instance, backed up from the palette', process.execPath, ['scripts/vscode/run-offline.mjs', '--ui', 'test/extension/ui/nested-site.mjs']);
    step('UI: a restore undone from its notification; the kept copies deleted', process.execPath, ['scripts/vscode/run-offline.mjs', '--ui', 'test/extension/ui/undo-restore.mjs']);
    step('UI: a deleted blob file in the Problems panel, restored by its Quick Fix', process.execPath, [
      'scripts/vscode/run-offline.mjs',
      '--ui',
      'test/extension/ui/quick-fix.mjs',
    ]);
    step(
      'UI: the Backup History: points, gaps, failed runs; a click reveals a generation',
      process.execPath,
      ['scripts/vscode/run-offline.mjs', '--ui', 'test/extension/ui/history.mjs'],
      {
        PLONE_BACKUP_UI_SCREENSHOT_DIR: tmp,
      },
    );
    step('UI: Set Remote Credentials…, the Remote section, Restore from Remote… (real S3 server)', process.execPath, [
      'scripts/vscode/run-offline.mjs',
      '--ui',
      'test/extension/ui/remote.mjs',
    ]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (summary.length) process.stderr.write(`\n[run-tests] what failed:\n${summary.join('\n')}\n`);
process.exit(failed ? 1 : 0);
