// The project's one test command (`npm test`): the engine, CLI and deployment
// tests under node's test runner, then the extension tests in a real VS Code
// (offline: code-server + headless Chromium; see scripts/vscode/).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
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

if (suites.includes('unit')) {
  const files = ['engine', 'cli', 'deploy'].flatMap((d) => findTests(join('out', 'test', d)));
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
  if (r.status !== 0) failed = true;
}

if (suites.includes('extension') && existsSync('scripts/vscode/run-offline.mjs')) {
  const r = spawnSync(process.execPath, ['scripts/vscode/run-offline.mjs'], { stdio: 'inherit' });
  if (r.status !== 0) failed = true;
}

process.exit(failed ? 1 : 0);
