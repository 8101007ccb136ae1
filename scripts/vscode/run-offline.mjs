#!/usr/bin/env node
// Runs the extension tests inside a real VS Code extension host, offline:
// code-server (VS Code 1.100.3 server + workbench, ordinary Node extension host)
// opened in headless Debian Chromium driven by playwright-core. The workbench is
// handed extensionDevelopmentPath / extensionTestsPath the way @vscode/test-electron
// hands them to the desktop app, and reports back through codeAutomationLog /
// codeAutomationExit. See docs in the header of each function below.
//
// Prerequisites (this script builds nothing):
//   npm run build                      -> dist/extension.js
//   npx tsc -p tsconfig.test.json      -> out/test/extension/suite/index.js
// It runs scripts/vscode/install.sh first (a fast no-op once installed).
//
// Usage:
//   node scripts/vscode/run-offline.mjs [options]
//     --workspace DIR     folder to open (default: a fresh empty temp folder)
//     --tests PATH        compiled suite entry (default out/test/extension/suite/index.js)
//     --screenshot PNG    save a screenshot of the workbench when the suite ends
//     --timeout SECONDS   overall limit (default 180)
//     --ui SCRIPT.mjs     UI mode: open the workbench with the extension loaded but no
//                         test suite, then call SCRIPT's default export with a driver
//                         object (see `makeDriver`); its return value is the exit code
//     --vsix FILE.vsix    packaged mode: install FILE into the test code-server
//                         (--install-extension) and run the suite against that
//                         installed copy (extensionDevelopmentPath is an empty folder:
//                         the workbench runs extensionTestsPath only in extension
//                         development mode, and an empty one adds no extension); only the
//                         "Extension activation" suite unless PLONE_BACKUP_TEST_GREP
//                         says otherwise; PLONE_BACKUP_EXPECT_VSIX=1 reaches the tests
//     --tz ZONE           the IANA time zone (e.g. Europe/Berlin) code-server, and so the
//                         extension host, runs in (TZ), and the browser page's; a --ui
//                         script may ask for one itself with `export const tz = 'ZONE'`
//                         (--tz wins over it, it over PLONE_BACKUP_TEST_TZ); the
//                         driver's `tz` says which was used (undefined: the machine's)
//     --keep              keep the temp folders (code-server logs) for debugging
//     --verbose           echo code-server's output and browser console errors
//   Environment: PLONE_BACKUP_TEST_WORKSPACE, PLONE_BACKUP_SCREENSHOT, PLONE_BACKUP_VSIX,
//   PLONE_BACKUP_TEST_TIMEOUT (seconds), PLONE_BACKUP_TEST_TZ stand for the options of the
//   same meaning.
//   Every variable of this process reaches the extension host (and so the tests);
//   PLONE_BACKUP_TEST_WORKSPACE is always set there to the opened folder.
//   PLONE_BACKUP_TEST_HOOKS=1 is set there for the in-host suite only (it lets
//   command arguments skip confirmations and exposes the extension's API; see
//   src/extension/safety.ts); the --vsix and --ui runs get it removed, so they see
//   the extension as users do.
//
// Exit code: the suite's (0 passed, 1 failed); 1 on timeout or a setup failure.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import util from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
const cacheDir = process.env.PLONE_BACKUP_VSCODE_CACHE ?? path.join(repoRoot, '.cache', 'code-server');
const codeServerEntry = path.join(cacheDir, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const chromiumPath = process.env.PLONE_BACKUP_CHROMIUM ?? '/usr/bin/chromium';

// Workbench messages that reach codeAutomationLog next to the tests' console output
// (printed only with --verbose).
const WORKBENCH_NOISE = new RegExp(
  '^(Resolving connection token|Resolved connection token|Creating a socket \\(|' +
    'Ignoring fetching additional builtin extensions|Updating additional builtin extensions cache|\\[Service Worker\\]|ChatSessionStore:)',
);

// User settings of the test profile: quiet, no network, no git scanning.
const DEFAULT_SETTINGS = {
  'git.enabled': false,
  'telemetry.telemetryLevel': 'off',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'workbench.enableExperiments': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'update.mode': 'none',
};

const log = (...a) => process.stderr.write(`[run-offline] ${util.format(...a)}\n`);

function parseArgs(argv) {
  const opts = {
    workspace: process.env.PLONE_BACKUP_TEST_WORKSPACE || undefined,
    tests: path.join(repoRoot, 'out', 'test', 'extension', 'suite', 'index.js'),
    screenshot: process.env.PLONE_BACKUP_SCREENSHOT || undefined,
    timeout: Number(process.env.PLONE_BACKUP_TEST_TIMEOUT) || 180,
    ui: undefined,
    vsix: process.env.PLONE_BACKUP_VSIX || undefined,
    tz: undefined,
    keep: false,
    verbose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--workspace') opts.workspace = value();
    else if (a === '--tests') opts.tests = value();
    else if (a === '--screenshot') opts.screenshot = value();
    else if (a === '--timeout') opts.timeout = Number(value());
    else if (a === '--ui') opts.ui = value();
    else if (a === '--vsix') opts.vsix = value();
    else if (a === '--tz') opts.tz = value();
    else if (a === '--keep') opts.keep = true;
    else if (a === '--verbose') opts.verbose = true;
    else if (a === '-h' || a === '--help') {
      process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\nimport ')[0] + '\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (!(opts.timeout > 0)) throw new Error('--timeout must be a positive number of seconds');
  if (opts.vsix && opts.ui) throw new Error('--vsix and --ui cannot be combined');
  if (opts.tz !== undefined) checkZone(opts.tz, '--tz');
  if (process.env.PLONE_BACKUP_TEST_TZ) checkZone(process.env.PLONE_BACKUP_TEST_TZ, 'PLONE_BACKUP_TEST_TZ');
  return opts;
}

/** Throws unless `zone` is an IANA time zone this Node knows (a typo would silently mean UTC). */
function checkZone(zone, what) {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
  } catch {
    throw new Error(`${what}: "${zone}" is not a time zone (an IANA name such as Europe/Berlin)`);
  }
}

/** Installs code-server and the Debian packages if needed (no-op when done). */
export function ensureInstalled() {
  const r = spawnSync('bash', [path.join(here, 'install.sh')], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0) throw new Error(`scripts/vscode/install.sh failed (exit ${r.status ?? r.signal})`);
}

async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts code-server on a free loopback port, in its own process group, with all
 * its state in `tmp`. Resolves once GET /healthz answers 200. With `vsix`, that
 * package is installed into the (empty) extensions folder first.
 * Returns { port, url, child, logFile, stop() }.
 */
export async function startCodeServer({ tmp, workspace, env = {}, settings = {}, verbose = false, vsix }) {
  const dirs = {};
  for (const d of ['user-data/User', 'extensions', 'xdg-config', 'xdg-data', 'xdg-cache', 'tmp']) {
    dirs[d] = path.join(tmp, d);
    fs.mkdirSync(dirs[d], { recursive: true });
  }
  dirs['user-data'] = path.join(tmp, 'user-data');
  fs.writeFileSync(path.join(dirs['user-data/User'], 'settings.json'), JSON.stringify({ ...DEFAULT_SETTINGS, ...settings }, null, 2));
  const config = path.join(tmp, 'config.yaml');
  fs.writeFileSync(config, '');
  const logFile = path.join(tmp, 'code-server.log');
  const serverEnv = {
    ...process.env,
    ...env,
    // Keep everything out of the home folder and /tmp; all of it goes with `tmp`.
    XDG_CONFIG_HOME: dirs['xdg-config'],
    XDG_DATA_HOME: dirs['xdg-data'],
    XDG_CACHE_HOME: dirs['xdg-cache'],
    TMPDIR: dirs.tmp,
    EXTENSIONS_GALLERY: '{}',
  };
  if (vsix) {
    const r = spawnSync(
      process.execPath,
      [codeServerEntry, '--config', config, '--user-data-dir', dirs['user-data'], '--extensions-dir', dirs.extensions, '--install-extension', path.resolve(vsix)],
      { cwd: workspace, env: serverEnv, encoding: 'utf8', timeout: 120_000 },
    );
    const said = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    fs.writeFileSync(logFile, `--install-extension ${vsix}:\n${said}\n`);
    if (r.status !== 0 || !/installed/i.test(said)) {
      throw new Error(`code-server --install-extension ${vsix} failed (exit ${r.status ?? r.signal}):\n${said}`);
    }
    if (verbose) log(said);
  }
  const out = fs.openSync(logFile, 'a');
  const port = await freePort();
  const args = [
    codeServerEntry,
    '--config',
    config,
    '--auth',
    'none',
    '--bind-addr',
    `127.0.0.1:${port}`,
    '--user-data-dir',
    dirs['user-data'],
    '--extensions-dir',
    dirs.extensions,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    '--ignore-last-opened',
    workspace,
  ];
  const child = spawn(process.execPath, args, {
    cwd: workspace,
    detached: true, // own process group: we end the whole group by its id
    stdio: ['ignore', verbose ? 'inherit' : out, verbose ? 'inherit' : out],
    env: serverEnv,
  });
  fs.closeSync(out);
  let exited = null;
  child.on('exit', (code, signal) => (exited = signal ?? code));

  const stop = async () => {
    if (child.pid === undefined) return;
    const kill = (sig) => {
      try {
        process.kill(-child.pid, sig);
        return true;
      } catch {
        return false; // group already gone
      }
    };
    if (!kill('SIGTERM')) return;
    for (let i = 0; i < 50; i++) {
      await sleep(100);
      if (!kill(0)) return;
    }
    kill('SIGKILL');
  };

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== null) {
      throw new Error(`code-server exited early (${exited}); log:\n${tail(logFile)}`);
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer /healthz within 60 s; log:\n${tail(logFile)}`);
    }
    await sleep(100);
  }
  return { port, url, child, logFile, stop };
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * The workbench URL: opens `workspace`, loads the extension at `extensionPath` (if
 * given; else only installed extensions run) as under development and, when
 * `testsPath` is given, runs that suite in the host.
 */
export function workbenchUrl({ url, port, workspace, extensionPath, testsPath }) {
  const remote = (p) => `vscode-remote://127.0.0.1:${port}${p.split(path.sep).join('/')}`;
  const payload = [];
  if (extensionPath) payload.push(['extensionDevelopmentPath', remote(extensionPath)]);
  if (testsPath) payload.push(['extensionTestsPath', remote(testsPath)]);
  payload.push(['skipWelcome', 'true']);
  return `${url}/?folder=${encodeURIComponent(workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`;
}

/** Headless Chromium with the flags known to work in containers; its files go under `tmp`. */
export async function launchBrowser(tmp) {
  const { chromium } = await import('playwright-core');
  const env = { ...process.env };
  if (tmp) {
    for (const [k, d] of [
      ['XDG_CONFIG_HOME', 'xdg-config'],
      ['XDG_CACHE_HOME', 'xdg-cache'],
      ['TMPDIR', 'tmp'],
    ]) {
      env[k] = path.join(tmp, 'chromium', d);
      fs.mkdirSync(env[k], { recursive: true });
    }
  }
  return chromium.launch({
    env,
    executablePath: chromiumPath,
    headless: true,
    // Signals are handled by the runner (it must also end code-server's group).
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Helpers to drive the workbench like a person would, for UI tests and screenshots.
 * `page` is the playwright Page showing the workbench.
 */
export function makeDriver(page, extra = {}) {
  return {
    page,
    ...extra,
    /** Waits until the workbench is laid out (activity bar visible). */
    async ready(timeout = 30_000) {
      await page.locator('.monaco-workbench .part.activitybar').first().waitFor({ timeout });
    },
    /**
     * F1, type the command's palette title ("Category: Title", e.g. "Plone Backup: Refresh"),
     * wait until the highlighted row is that command, Enter.
     */
    async runCommand(title) {
      await page.keyboard.press('F1');
      const input = page.locator('.quick-input-widget input');
      await input.waitFor({ timeout: 10_000 });
      await input.fill(`>${title}`);
      // The list first shows all commands; Enter only once the filter has applied.
      await page
        .locator('.quick-input-list .monaco-list-row.focused')
        .filter({ hasText: title.split(': ').pop() })
        .first()
        .waitFor({ timeout: 10_000 });
      await page.keyboard.press('Enter');
    },
    /**
     * Shows an activity-bar view container by the start of its aria-label ("Explorer",
     * or a contributed container's title, e.g. "Plone Backup"). Clicking the item that
     * is already selected would hide the side bar, so it is clicked only if needed.
     */
    async openActivity(label) {
      const item = page
        .locator('.activitybar li.action-item')
        .filter({
          has: page.locator(`a.action-label[aria-label^="${label}"]`),
        })
        .first();
      await item.waitFor({ timeout: 60_000 }); // the activity bar fills in once the extension is read: late on a busy machine
      if ((await item.getAttribute('aria-selected')) !== 'true') await item.click();
    },
    /** Texts of the rows of the visible lists/trees (optionally within `scope` selector). */
    async listRows(scope = '.monaco-workbench') {
      return page.locator(`${scope} .monaco-list-row`).allInnerTexts();
    },
    async screenshot(file) {
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      await page.screenshot({ path: file });
      log(`screenshot: ${file}`);
    },
  };
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    log(err.message);
    return 2;
  }
  const testsPath = path.resolve(opts.tests);
  for (const [file, hint] of [
    opts.vsix ? [path.resolve(opts.vsix), 'npm run package'] : [path.join(repoRoot, 'dist', 'extension.js'), 'npm run build'],
    ...(opts.ui ? [] : [[testsPath, 'npx tsc -p tsconfig.test.json']]),
  ]) {
    if (!fs.existsSync(file)) {
      log(`missing ${path.relative(repoRoot, file)}: run \`${hint}\` first`);
      return 2;
    }
  }

  // A UI script is loaded first: it may ask for a time zone (`export const tz`).
  let uiModule;
  if (opts.ui) {
    try {
      uiModule = await import(pathToFileURL(path.resolve(opts.ui)).href);
      if (opts.tz === undefined && uiModule.tz !== undefined) {
        checkZone(uiModule.tz, `${opts.ui}: export const tz`);
        opts.tz = uiModule.tz;
      }
    } catch (err) {
      log(`cannot load ${opts.ui}: ${err?.stack ?? err}`);
      return 2;
    }
  }
  opts.tz ??= process.env.PLONE_BACKUP_TEST_TZ || undefined;

  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'plone-backup-vscode-'));
  const workspace = opts.workspace ? path.resolve(opts.workspace) : path.join(tmp, 'workspace');
  fs.mkdirSync(workspace, { recursive: true });
  const extensionPath = opts.vsix ? path.join(tmp, 'no-development-extension') : repoRoot;
  fs.mkdirSync(extensionPath, { recursive: true });

  let server;
  let browser;
  let timer;
  let exitCode = 1;
  const cleanup = async () => {
    clearTimeout(timer);
    const t0 = Date.now();
    await browser?.close().catch(() => {});
    await server?.stop();
    if (opts.verbose) log(`cleanup took ${Date.now() - t0} ms`);
    if (opts.keep) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  };
  let cleaning;
  const onSignal = (sig) => {
    log(`${sig}: stopping`);
    cleaning ??= cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // Last resort if the process exits some other way: nothing may outlive the runner.
  process.on('exit', () => {
    if (server?.child.pid !== undefined) {
      try {
        process.kill(-server.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (!opts.keep) fs.rmSync(tmp, { recursive: true, force: true });
  });

  try {
    ensureInstalled();
    // undefined removes a variable the caller's environment may hold (spawn skips it).
    const env = { PLONE_BACKUP_TEST_WORKSPACE: workspace, PLONE_BACKUP_TEST_HOOKS: opts.vsix || opts.ui ? undefined : '1' };
    // The server's zone is the extension host's (it inherits the server's environment).
    if (opts.tz) {
      env.TZ = opts.tz;
      log(`time zone ${opts.tz}`);
    }
    if (opts.vsix) {
      env.PLONE_BACKUP_EXPECT_VSIX = '1';
      env.PLONE_BACKUP_TEST_GREP = process.env.PLONE_BACKUP_TEST_GREP || 'Extension activation';
      log(`installing ${opts.vsix} into the test code-server`);
    }
    server = await startCodeServer({
      tmp,
      workspace,
      env,
      verbose: opts.verbose,
      vsix: opts.vsix,
    });
    log(`code-server ${server.url} up in ${((Date.now() - started) / 1000).toFixed(1)} s; workspace ${workspace}`);

    browser = await launchBrowser(tmp);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, ...(opts.tz ? { timezoneId: opts.tz } : {}) });
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') {
        pageErrors.push(m.text());
        if (opts.verbose) log(`browser: ${m.text()}`);
      }
    });

    let reportExit;
    const suiteExit = new Promise((resolve) => (reportExit = resolve));
    await page.exposeFunction('codeAutomationLog', (type, args) => {
      const text = util.format(...(Array.isArray(args) ? args : [args]));
      // The workbench's own start-up chatter comes through the same channel.
      if (!opts.verbose && WORKBENCH_NOISE.test(text)) return;
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    });
    await page.exposeFunction('codeAutomationExit', (code) => {
      reportExit(Number(code) || 0);
    });

    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve('timeout'), opts.timeout * 1000);
    });
    const serverDied = once(server.child, 'exit').then(() => 'server-exit');

    // The load event of a workbench on a busy machine can take well over playwright's default 30 s.
    await page.goto(workbenchUrl({ ...server, workspace, extensionPath, testsPath: opts.ui ? undefined : testsPath }), { timeout: 120_000 });

    let outcome;
    if (opts.ui) {
      const driver = makeDriver(page, { workspace, url: server.url, tz: opts.tz });
      const uiRun = (async () => {
        await driver.ready();
        const code = await uiModule.default(driver);
        return typeof code === 'number' ? code : 0;
      })().catch((err) => {
        log(`UI script failed: ${err?.stack ?? err}`);
        return 'ui-error';
      });
      outcome = await Promise.race([uiRun, timedOut, serverDied]);
    } else {
      outcome = await Promise.race([suiteExit, timedOut, serverDied]);
    }

    if (cleaning) return 130; // interrupted: the signal handler cleans up and exits

    if (opts.screenshot)
      await makeDriver(page)
        .screenshot(opts.screenshot)
        .catch((e) => log(`screenshot failed: ${e.message}`));

    if (outcome === 'ui-error') {
      const shot = opts.screenshot ?? path.join(os.tmpdir(), `plone-backup-vscode-ui-error-${process.pid}.png`);
      if (!opts.screenshot)
        await makeDriver(page)
          .screenshot(shot)
          .catch(() => {});
      log(`screenshot of the workbench at the failure: ${shot}`);
      exitCode = 1;
    } else if (outcome === 'timeout') {
      log(`TIMEOUT: no result from the ${opts.ui ? 'UI script' : 'extension tests'} after ${opts.timeout} s (raise it with --timeout SECONDS or PLONE_BACKUP_TEST_TIMEOUT).`);
      if (pageErrors.length) log(`browser errors:\n  ${pageErrors.slice(-10).join('\n  ')}`);
      log(`code-server log tail:\n${tail(server.logFile)}`);
      const shot = path.join(os.tmpdir(), `plone-backup-vscode-timeout-${process.pid}.png`);
      await page
        .screenshot({ path: shot })
        .then(() => log(`screenshot of the stuck workbench: ${shot}`))
        .catch(() => {});
      exitCode = 1;
    } else if (outcome === 'server-exit') {
      log(`code-server exited during the run; log:\n${tail(server.logFile)}`);
      exitCode = 1;
    } else {
      exitCode = outcome;
      log(`${opts.ui ? 'UI script' : 'suite'} exit code ${exitCode} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  } catch (err) {
    if (cleaning) return 130;
    log(`error: ${err?.stack ?? err}`);
    exitCode = 1;
  } finally {
    if (!cleaning) await cleanup();
    else await cleaning;
  }
  return exitCode;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().then((code) => process.exit(code));
}
