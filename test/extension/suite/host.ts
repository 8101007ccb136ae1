// What the in-host suites share: the extension's id, running a command and
// reading its outcome, waiting for a condition, listing a folder, and the test
// workspace with a fresh sample site (testWorkspace).
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { SampleSite, siteRunning } from '../../../src/engine/internal';
import { Command, type Outcome } from '../../../src/extension/commands';
import type { PloneBackupApi } from '../../../src/extension/extension';

/** publisher.name in package.json */
export const EXTENSION_ID = 'plone-backup.plone-backup';

export function exec<T = unknown>(id: string, args?: unknown): Promise<Outcome<T>> {
  return Promise.resolve(vscode.commands.executeCommand<Outcome<T>>(id, args));
}

/** The value of a command that must have succeeded. */
export function done<T>(o: Outcome<T>, what: string): T {
  assert.equal(o.status, 'done', `${what}: ${JSON.stringify(o)}`);
  return (o as { value: T }).value;
}

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Names in a folder, sorted; none when it does not exist. */
export const ls = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

/** The test workspace (PLONE_BACKUP_TEST_WORKSPACE) with its sample site, as every suite starts from it. */
export interface TestWorkspace {
  ws: string;
  varDir: string;
  dataFs: string;
  blobDir: string;
  api: PloneBackupApi;
  /**
   * A clean start: var/ moved aside (not deleted until `dispose`: a new
   * Data.fs must not get a freed inode of an old one, as the extension's
   * live-scan cache knows a Data.fs by its path and inode and would take the
   * new one for the old), the view refreshed, then unless `empty` a sample
   * site made by `site` (default: 2 documents and 2 files, 6 transactions,
   * the last "Added News"), refreshed again.
   */
  fresh(opts?: { empty?: boolean; site?: (s: SampleSite) => Promise<unknown> }): Promise<void>;
  /** Opens the site (made when there is none: an empty dev site's first commit), runs `fn` (its commits), closes it. */
  commit(fn: (s: SampleSite) => Promise<unknown>): Promise<void>;
  /** Removes the var/ folders `fresh` moved aside. */
  dispose(): void;
}

/** The default sample site: 2 documents, 2 files. */
async function sampleContent(s: SampleSite): Promise<void> {
  await s.addDocument('Front page');
  await s.uploadFile('report.pdf', randomBytes(3000));
  await s.uploadFile('logo.png', randomBytes(2000));
  await s.addDocument('News');
}

/**
 * Activates the extension and starts from a fresh sample site, so that a
 * suite (and, calling `fresh` in its tests, each test) runs alone
 * (PLONE_BACKUP_TEST_GREP) or in any order, whatever ran before. `name` tells
 * the suites' folders of old var/s apart.
 */
export async function testWorkspace(name: string, opts: { empty?: boolean; site?: (s: SampleSite) => Promise<unknown> } = {}): Promise<TestWorkspace> {
  const ws = process.env.PLONE_BACKUP_TEST_WORKSPACE!;
  assert.ok(ws, 'PLONE_BACKUP_TEST_WORKSPACE is not set');
  const varDir = path.join(ws, 'var');
  const dataFs = path.join(varDir, 'filestorage', 'Data.fs');
  const blobDir = path.join(varDir, 'blobstorage');
  const api = (await vscode.extensions.getExtension<PloneBackupApi>(EXTENSION_ID)!.activate())!;
  assert.ok(api?.tree && api.model, 'activate() does not return the API');
  const attic = fs.mkdtempSync(path.join(os.tmpdir(), `plone-backup-${name}-attic-`));
  let moved = 0;
  const w: TestWorkspace = {
    ws,
    varDir,
    dataFs,
    blobDir,
    api,
    async fresh(o = {}) {
      try {
        if (fs.existsSync(varDir)) fs.renameSync(varDir, path.join(attic, `var-${moved++}`));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
        fs.rmSync(varDir, { recursive: true, force: true });
      }
      done(await exec(Command.refresh), 'refresh');
      if (o.empty) return;
      const site = await SampleSite.create({ file: dataFs, blobDir });
      try {
        await (o.site ?? sampleContent)(site);
      } finally {
        await site.close();
      }
      done(await exec(Command.refresh), 'refresh');
    },
    async commit(fn) {
      const s = fs.existsSync(dataFs) ? await SampleSite.open({ file: dataFs, blobDir }) : await SampleSite.create({ file: dataFs, blobDir });
      try {
        await fn(s);
      } finally {
        await s.close();
      }
    },
    dispose() {
      fs.rmSync(attic, { recursive: true, force: true });
    },
  };
  await w.fresh(opts);
  return w;
}

/** A site that runs, as the tool sees one: `release` stops it (and removes the lock file). */
export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Holds the site's lock (`Data.fs.lock`) as a running Zope does: flock and its
 * sleep, one process group (the sleep inherits the locked descriptor), until
 * `release`, which a suite's teardown may call again.
 */
export async function holdSiteLock(dataFs: string): Promise<HeldLock> {
  const lockFile = `${dataFs}.lock`;
  const p = spawn('flock', [lockFile, 'sleep', '60'], { stdio: 'ignore', detached: true });
  let held = true;
  const lock: HeldLock = {
    async release() {
      if (!held) return;
      held = false;
      try {
        process.kill(-p.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
      await waitFor(async () => (await siteRunning(dataFs)) === undefined, 'the lock to be released', 5000);
      fs.rmSync(lockFile, { force: true });
    },
  };
  await waitFor(async () => (await siteRunning(dataFs)) !== undefined, 'the lock to be held', 5000).catch(async (e: unknown) => {
    await lock.release();
    throw e;
  });
  return lock;
}
