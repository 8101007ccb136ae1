/**
 * Proves that disk and filesystem faults end in a clear typed error (or the
 * documented fallback) and lose nothing.
 *
 * - A write that fails part way with ENOSPC or EIO (injected through
 *   fileLayer.open: a handle whose writes stop after N bytes) in every file a
 *   repozo backup, a deployment backup, a zip backup, a recover and a restore
 *   write: a typed IO error (with the "free some disk space" hint for
 *   ENOSPC), nothing registered, no temp file, the live site and the old
 *   output untouched, and the next run succeeds.
 * - A real full disk: the backup folders on a small tmpfs (when this machine
 *   lets us mount one).
 * - Permission denied: the CLI run as `nobody` (runuser) on folders it may not
 *   write, and a backup folder path that is a regular file.
 * - Another filesystem (no hard links across): backups on /dev/shm or a tmpfs
 *   restore with copies; an injected EXDEV on link makes the blob generation
 *   copy instead of link.
 * - A blob file that vanishes while it is copied, with and without a pack.
 * - Data.fs replaced by a pack, or cut short, while it is read.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  PloneBackupError,
  backup,
  backupDeployment,
  committedEnd,
  discoverDeployment,
  fileLayer,
  foldersFor,
  recover,
  restoreDeployment,
  type Deployment,
  OWNERS_FILE,
} from '../../src/engine/internal';
import { assertConsistent, referencedBlobs } from '../support/assert';
import { recordFigures, runHooked } from '../support/crash';
import { fakeClock } from '../support/fixtures';
import { blobContents, blobFiles, content, md5File, snapshot, tempLeftovers, tmpDir, type TestHooks } from '../support/fs';
import { CLI } from '../support/paths';
import { recoverMd5, registeredStamps, verifyClean } from '../support/repo';
import { makeSite, type Site, sampleSite, generationBlobFiles } from '../support/site';
import { nth } from '../support/must';

const FIG = 'faults';
const counts: Record<string, number> = {};
const count = (k: string, n = 1) => (counts[k] = (counts[k] ?? 0) + n);

// ---------------------------------------------------------------------------
// Injected write faults

interface Budget {
  left: number;
  code: string;
  hits: number;
  /** The files whose writes failed. */
  hitPaths?: string[];
  /** Only files whose path matches fail (all when not given). */
  only?: RegExp;
}

/** A handle whose writes fail with `code` once `budget.left` bytes are used up (a short write first). */
function faulty(fh: FileHandle, budget: Budget, file = ''): FileHandle {
  const fail = () => {
    budget.hits++;
    budget.hitPaths?.push(file);
    return Promise.reject(Object.assign(new Error(`${budget.code}: injected`), { code: budget.code, errno: -28, syscall: 'write' }));
  };
  return new Proxy(fh, {
    get(target, prop) {
      if (prop === 'write') {
        return async (buf: Buffer, off = 0, len = buf.length - off, pos: number | null = null) => {
          if (budget.left <= 0) return fail();
          const n = Math.min(len, budget.left);
          budget.left -= n;
          return target.write(buf, off, n, pos);
        };
      }
      if (prop === 'writeFile') return () => fail();
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function withWriteFault<R>(budget: Budget, fn: () => Promise<R>): Promise<R> {
  const real = fileLayer.open;
  const realCopy = fileLayer.copyFile;
  // Every file the engine writes is opened through fileLayer (the incremental
  // restore's append to Data.fs in place too); copies go through its copyFile.
  fileLayer.open = async (p, flags, mode) => (budget.only && !budget.only.test(p) ? real(p, flags, mode) : faulty(await real(p, flags, mode), budget, p));
  fileLayer.copyFile = async (src, dst, flags) => {
    if (budget.only && !budget.only.test(dst)) return realCopy(src, dst, flags);
    const size = (await fs.promises.stat(src)).size;
    if (size <= budget.left) {
      budget.left -= size;
      return realCopy(src, dst, flags);
    }
    // The disk fills part way through the copy: what was copied stays behind.
    await realCopy(src, dst, flags);
    await fs.promises.truncate(dst, Math.max(0, budget.left));
    budget.left = 0;
    budget.hits++;
    budget.hitPaths?.push(dst);
    throw Object.assign(new Error(`${budget.code}: injected`), { code: budget.code, errno: -28, syscall: 'copyfile' });
  };
  try {
    return await fn();
  } finally {
    fileLayer.open = real;
    fileLayer.copyFile = realCopy;
  }
}

/** Bytes a run writes through fileLayer (to pick fault points inside it). */
async function bytesWritten(fn: () => Promise<unknown>): Promise<number> {
  const budget = { left: Number.MAX_SAFE_INTEGER, code: 'EIO', hits: 0 };
  await withWriteFault(budget, fn);
  return Number.MAX_SAFE_INTEGER - budget.left;
}

/** Fault points: nothing, a byte, and spread over the run's bytes. */
function budgets(total: number): number[] {
  const out = new Set([0, 1, 23, 512]);
  for (let i = 1; i < 8; i++) out.add(Math.floor((total * i) / 8));
  out.add(total - 1);
  return [...out].filter((b) => b >= 0 && b < total).sort((a, b) => a - b);
}

function assertIoError(e: unknown, code: string, what: string): void {
  assert.ok(PloneBackupError.is(e), `${what}: not a PloneBackupError: ${(e as Error)?.stack ?? e}`);
  assert.equal(e.code, 'IO', `${what}: ${e.code} ${e.message}`);
  if (code === 'ENOSPC') {
    assert.match(e.message, /disk is full/, what);
    assert.match(e.userMessage, /Free some disk space/, what);
  } else assert.match(e.message, /I\/O error/, what);
}

/** Files that describe backups rather than hold them: a listing cache, the owners record. */
const bookkeeping = (r: string) => r.endsWith('.plone-backup-cache.json') || r.endsWith(OWNERS_FILE);

/**
 * Runs `op` failing at every fault point with each code: the error is typed,
 * `unchanged()` is what it was, no temp file is left; then `op` succeeds.
 */
async function faultLoop(name: string, op: () => Promise<unknown>, watch: string[], reset?: () => Promise<void>): Promise<number> {
  await reset?.();
  const total = await bytesWritten(op);
  assert.ok(total > 0, `${name}: writes nothing through fileLayer`);
  let n = 0;
  for (const code of ['ENOSPC', 'EIO']) {
    for (const left of budgets(total)) {
      await reset?.();
      const before = watch.map((d) => snapshot(d, { skip: bookkeeping }));
      const budget: Budget = { left, code, hits: 0, hitPaths: [] };
      let err: unknown;
      try {
        await withWriteFault(budget, op);
      } catch (e) {
        err = e;
      }
      assert.ok(budget.hits > 0, `${name}: the fault at byte ${left} was never hit`);
      // The owners record is written after the backup is registered, on a best-effort basis
      // (a chain without one is known by its first transaction): there a fault fails nothing.
      if (err === undefined && budget.hitPaths!.every((f) => path.basename(f).includes(OWNERS_FILE))) {
        count('injected write faults (owners record, best effort)');
        continue;
      }
      assertIoError(err, code, `${name} (${code} after ${left} bytes)`);
      watch.forEach((d, i) => assert.deepEqual(snapshot(d, { skip: bookkeeping }), before[i], `${name} (${code} after ${left} bytes): ${d} changed`));
      for (const d of watch) assert.deepEqual(tempLeftovers(d), [], `${name}: temp files left`);
      n++;
    }
  }
  await reset?.();
  await op(); // and without a fault it works
  count('injected write faults', n);
  return n;
}

describe('a write that fails part way (ENOSPC, EIO) loses nothing', () => {
  it('repozo backups: full and incremental, plain and gzip', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const site = await sampleSite(t, { file });
    for (let i = 0; i < 20; i++) await site.addDocument(`doc ${i}`, 'x'.repeat(2000));
    const clock = fakeClock();
    for (const gzip of [false, true]) {
      await faultLoop(`repozo full${gzip ? ' gzip' : ''}`, () => backup({ file, repository: repo, full: true, gzip, now: clock.now }), [repo, dir]);
      await site.addDocument('more');
      await faultLoop(
        `repozo incremental${gzip ? ' gzip' : ''}`,
        async () => {
          const r = await backup({ file, repository: repo, gzip, quick: true, now: clock.now });
          assert.equal(r.action, 'incremental');
        },
        [repo],
        async () => {
          // each try has something new to back up
          await site.addDocument('one more');
        },
      );
    }
    await site.close();
    assert.ok((await verifyClean(repo)) > 0);
    assert.equal(await recoverMd5(repo), md5File(file));
  });

  it('deployment backup, zip backup, recover and restore', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 10, files: 3 });
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    const v = s.varDir;
    const firstFolders = [path.join(v, 'backups'), path.join(v, 'blobstoragebackups')];
    await faultLoop(
      'deployment backup (the first)',
      () => backupDeployment(dep, 'backup', { now: clock.now }),
      [...firstFolders, s.blobDir],
      async () => {
        for (const d of firstFolders) fs.rmSync(d, { recursive: true, force: true });
      },
    );
    // Each run has a new document and a new blob file (copied into the generation,
    // through fileLayer.copyFile), so every run writes about as much as the first.
    let uploads = 0;
    await faultLoop(
      'deployment backup (incremental)',
      () => backupDeployment(dep, 'backup', { now: clock.now }),
      [path.join(v, 'backups'), path.join(v, 'blobstoragebackups')],
      async () => {
        await s.site.addDocument('another');
        await s.site.uploadFile(`n${uploads}.pdf`, content(`n${uploads++}`));
      },
    );
    await faultLoop('zipbackup (.fsz and blob tar)', () => backupDeployment(dep, 'zipbackup', { now: clock.now }), [path.join(v, 'zipbackups'), path.join(v, 'blobstoragezips')]);
    await s.site.close();
    // recover over an existing file: the old file stays whole
    const out = path.join(root, 'out', 'Data.fs');
    fs.mkdirSync(path.dirname(out));
    const stamps = await registeredStamps(path.join(v, 'backups'));
    await recover({ repository: path.join(v, 'backups'), output: out, date: stamps[0], keepOld: false });
    await faultLoop(
      'recover -o',
      () => recover({ repository: path.join(v, 'backups'), output: out, keepOld: false }),
      [path.dirname(out)],
      async () => {
        await recover({ repository: path.join(v, 'backups'), output: out, date: stamps[0], keepOld: false });
      },
    );
    // restore (full, to the first state) and ziprestore: the live site stays whole
    const liveDirs = [path.dirname(s.file), s.blobDir];
    const back = async () => {
      await restoreDeployment(dep, { keepOld: false, incremental: false });
    };
    await back();
    await faultLoop('restore (full)', () => restoreDeployment(dep, { date: stamps[0], keepOld: false, incremental: false }), liveDirs, back);
    await faultLoop('ziprestore (tar extraction)', () => restoreDeployment(dep, { kind: 'zip', keepOld: false }), liveDirs, back);
    // The incremental restore: the first state live, the newer pieces appended in place.
    await faultLoop(
      'restore (incremental, appending in place)',
      async () => {
        const r = nth(await restoreDeployment(dep, { keepOld: false }), 0);
        assert.equal(r.mode, 'incremental');
      },
      liveDirs.slice(0, 1),
      async () => {
        await restoreDeployment(dep, { date: stamps[0], keepOld: false, incremental: false });
      },
    );
  });
});

describe('a lock that cannot be written (ENOSPC, EIO)', () => {
  // The repository lock's owner file (base/lock.ts) and ZODB's Data.fs.lock,
  // which a restore creates when the site has none (deploy/site.ts), are
  // written through fileLayer like everything else.
  it('the repository lock and Data.fs.lock: a typed error, no lock or owner file left, then it works', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 2, files: 1 });
    await s.site.close();
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    // Their folders exist (a backup creates them before it takes the lock).
    for (const kind of ['backup', 'zipbackup'] as const) await backupDeployment(dep, kind, { now: clock.now });
    const restore = () => restoreDeployment(dep, { keepOld: false, incremental: false });
    const cases: [string, RegExp, () => Promise<unknown>][] = [
      ['backup, the repository lock', /\.plone-backup\.lock\./, () => backupDeployment(dep, 'backup', { now: clock.now })],
      ['zipbackup, the repository lock', /\.plone-backup\.lock\./, () => backupDeployment(dep, 'zipbackup', { now: clock.now })],
      ['restore, the repository lock', /\.plone-backup\.lock\./, restore],
      ['restore, Data.fs.lock', /Data\.fs\.lock$/, restore],
    ];
    for (const [what, only, op] of cases) {
      for (const code of ['ENOSPC', 'EIO']) {
        for (const left of [0, 3]) {
          const before = snapshot(root, { skip: bookkeeping });
          const budget: Budget = { left, code, hits: 0, hitPaths: [], only };
          const err = await withWriteFault(budget, op).catch((e: unknown) => e);
          assert.ok(budget.hits > 0, `${what}: the fault was never hit`);
          assertIoError(err, code, `${what} (${code} after ${left} bytes)`);
          assert.deepEqual(snapshot(root, { skip: bookkeeping }), before, `${what} (${code}): something changed`);
          assert.deepEqual(tempLeftovers(root), [], `${what}: temp files left`);
          count('injected write faults (locks)');
        }
      }
      await op();
    }
  });
});

// ---------------------------------------------------------------------------
// A real full disk

function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-mnt-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', d]);
  if (r.status === 0) spawnSync('umount', [d]);
  fs.rmSync(d, { recursive: true, force: true });
  return r.status === 0;
}
const MOUNT = canMount();

/** Mounts a tmpfs of `size` on `dir`; the caller unmounts it (before its temp folder goes). */
function mountTmpfs(dir: string, size: string): () => void {
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  let mounted = true;
  return () => {
    if (mounted) spawnSync('umount', ['-l', dir]);
    mounted = false;
  };
}

describe('a real full disk', () => {
  it('backups into a tmpfs that fills up fail cleanly, and work once there is room', { skip: !MOUNT && 'cannot mount a tmpfs here' }, async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 30, files: 0 });
    for (let i = 0; i < 12; i++) await s.site.uploadFile(`big${i}.bin`, content(`big${i}`, 40_000));
    await s.site.close();
    const backups = path.join(root, 'bk');
    const dep = await discoverDeployment(root, { backupRoot: backups });
    const clock = fakeClock();
    // A few sizes: the piece, the index, the blob copies each run out of room somewhere.
    let n = 0;
    let unmount = () => undefined as void;
    t.after(() => unmount());
    for (const kb of [8, 24, 64, 160, 300]) {
      const mnt = backups;
      unmount = mountTmpfs(mnt, `${kb}k`);
      let err: unknown;
      try {
        for (const kind of ['backup', 'zipbackup', 'snapshot'] as const) await backupDeployment(dep, kind, { now: clock.now });
      } catch (e) {
        err = e;
      }
      assert.ok(err, `${kb} KiB was enough`);
      assertIoError(err, 'ENOSPC', `a ${kb} KiB disk`);
      assert.deepEqual(tempLeftovers(mnt), [], `${kb} KiB: temp files left on the full disk`);
      // Whatever was registered restores; the rest is not there.
      for (const kind of ['backup', 'zip', 'snapshot'] as const) {
        const repo = foldersFor(nth(dep.storages, 0), kind).repo;
        if ((await registeredStamps(repo)).length) {
          await verifyClean(repo);
          assert.equal(await recoverMd5(repo), md5File(s.file));
        }
      }
      unmount();
      fs.rmSync(mnt, { recursive: true, force: true });
      n++;
    }
    // Room enough: it works.
    unmount = mountTmpfs(backups, '16m');
    for (const kind of ['backup', 'zipbackup', 'snapshot'] as const) await backupDeployment(dep, kind, { now: clock.now });
    await verifyClean(foldersFor(nth(dep.storages, 0), 'backup').repo);
    unmount();
    count('real full disks (tmpfs)', n);
  });
});

// ---------------------------------------------------------------------------
// Permissions

// Root, runuser, and a CLI bundle that `nobody` can read (the checkout may sit in a private folder).
const RUNUSER = process.getuid?.() === 0 && spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, CLI, '--version']).status === 0;

describe('permission denied', () => {
  it('backup and restore as a user who may not write there: a clear error, nothing changed', { skip: !RUNUSER && 'needs root and runuser' }, async (t) => {
    // Under /tmp, readable by everyone, writable by root only.
    const root = tmpDir(t);
    fs.chmodSync(root, 0o755);
    const s = await makeSite(t, root, { docs: 2, files: 2 });
    await s.site.close();
    const dep = await discoverDeployment(root);
    await backupDeployment(dep, 'backup', { now: fakeClock().now });
    const chmodAll = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        fs.chmodSync(p, e.isDirectory() ? 0o755 : 0o644);
        if (e.isDirectory()) chmodAll(p);
      }
    };
    chmodAll(root);
    const before = snapshot(root);
    for (const [args, what] of [
      [['backup', '--dir', root], 'backup'],
      [['fullbackup', '--dir', root], 'fullbackup'],
      [['snapshot', '--dir', root], 'snapshot (its folders cannot be created)'],
      [['restore', '--yes', '--dir', root, '--full-restore'], 'restore'],
      [['repozo', '-B', '-F', '-f', s.file, '-r', path.join(s.varDir, 'backups')], 'repozo -B'],
    ] as const) {
      const r = await runHooked([...args], { runAs: 'nobody' });
      assert.equal(r.status, 1, `${what}: ${r.stderr}`);
      assert.match(r.stderr, /Permission denied|in use by another/, `${what}: ${r.stderr}`);
      assert.match(r.stderr, /Check the permissions|Wait for it/, `${what}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /    at /, `${what}: a stack trace`);
      assert.deepEqual(snapshot(root), before, `${what} changed something`);
      count('permission denied (runuser nobody)');
    }
  });

  it('a backup folder path that is a regular file', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 1, files: 1 });
    await s.site.close();
    const blocker = path.join(root, 'not-a-folder');
    fs.writeFileSync(blocker, 'x');
    const before = snapshot(root);
    for (const kind of ['backup', 'zipbackup'] as const) {
      const dep = await discoverDeployment(root, { backupRoot: blocker });
      let err: unknown;
      try {
        await backupDeployment(dep, kind);
      } catch (e) {
        err = e;
      }
      assert.ok(PloneBackupError.is(err), String(err));
      assert.ok(['IO', 'REPO_MISSING'].includes(err.code), `${err.code}: ${err.message}`);
      assert.ok(err.message.includes(blocker), err.message);
      assert.deepEqual(snapshot(root), before);
      count('backup folder is a file');
    }
    const e = await backup({ file: s.file, repository: blocker }).catch((x) => x);
    assert.ok(PloneBackupError.is(e, 'REPO_MISSING'), String(e));
    count('backup folder is a file');
  });
});

// ---------------------------------------------------------------------------
// Another filesystem

describe('backups on another filesystem (no hard links across)', () => {
  /** A folder on another filesystem than os.tmpdir(): /dev/shm, else a tmpfs mount. */
  function otherFs(t: TestHooks): string | undefined {
    const here = fs.statSync(os.tmpdir()).dev;
    if (fs.existsSync('/dev/shm') && fs.statSync('/dev/shm').dev !== here) {
      const d = fs.mkdtempSync('/dev/shm/pb-fault-');
      t.after(() => fs.rmSync(d, { recursive: true, force: true }));
      return d;
    }
    if (!MOUNT) return undefined;
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-xfs-'));
    const unmount = mountTmpfs(d, '64m');
    t.after(() => {
      unmount();
      fs.rmSync(d, { recursive: true, force: true });
    });
    return d;
  }

  for (const format of ['pool', 'dir'] as const) {
    it(`backs up, and restores with copies where links cannot cross (${format})`, async (t) => {
      const other = otherFs(t);
      if (!other) return t.skip('no second filesystem');
      const root = tmpDir(t);
      const s = await makeSite(t, root, { docs: 3, files: 3 });
      const dep = await discoverDeployment(root, { backupRoot: other });
      dep.settings.blobFormat = format;
      const clock = fakeClock();
      const r1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
      await s.site.uploadFile('x.pdf', content('x'));
      const r2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
      if (format === 'dir') assert.equal(r2.linked, r1.blobFiles, 'links inside the backup filesystem still work');
      else assert.deepEqual([r2.copied, r2.linked], [1, 0], 'only the new file goes into the pool');
      await s.site.close();
      const want = blobContents(s.blobDir);
      const data = md5File(s.file);
      await restoreDeployment(dep, { date: r1.filestorage.stamp, keepOld: false });
      const res = nth(await restoreDeployment(dep, { keepOld: false }), 0);
      assert.equal(md5File(s.file), data);
      assert.deepEqual(blobContents(s.blobDir), want);
      for (const rel of blobFiles(s.blobDir)) assert.equal(fs.statSync(path.join(s.blobDir, rel)).dev, fs.statSync(s.file).dev, 'a blob file is not on the live filesystem');
      await assertConsistent(s.file, s.blobDir);
      assert.ok(res.blobFilesAdded >= 0);
      count('another filesystem (real)');
    });
  }

  it('an EXDEV from link makes a blob generation copy instead', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 1, files: 3 });
    const dep = await discoverDeployment(root);
    dep.settings.blobFormat = 'dir'; // trees link every file; the pool links none
    const clock = fakeClock();
    await backupDeployment(dep, 'backup', { now: clock.now });
    await s.site.uploadFile('y.pdf', content('y'));
    const real = fs.promises.link;
    let refused = 0;
    fs.promises.link = async () => {
      refused++;
      throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' });
    };
    let r;
    try {
      [r] = await backupDeployment(dep, 'backup', { now: clock.now });
      await s.site.close();
      // and a restore that cannot link copies as well
      await restoreDeployment(dep, { keepOld: false, incremental: false });
    } finally {
      fs.promises.link = real;
    }
    assert.ok(refused > 0);
    assert.equal(r!.linked, 0);
    assert.equal(r!.copied, r!.blobFiles);
    assert.deepEqual(await generationBlobFiles(r!.blobGeneration!), await referencedBlobs(s.file));
    await assertConsistent(s.file, s.blobDir);
    count('another filesystem (EXDEV injected)', 2);
  });
});

// ---------------------------------------------------------------------------
// Blobs and Data.fs changing under a backup

describe('the live site changes under a backup', () => {
  async function siteWithBackup(t: TestHooks): Promise<{ s: Site; dep: Deployment; clock: ReturnType<typeof fakeClock>; fileOid: Buffer }> {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 2, files: 1 });
    const fileOid = await s.site.uploadFile('report.pdf', content('r1'));
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    await backupDeployment(dep, 'backup', { now: clock.now });
    await s.site.uploadFile('report.pdf', content('r2'), fileOid);
    await s.site.uploadFile('report.pdf', content('r3'), fileOid);
    return { s, dep, clock, fileOid };
  }

  /** Runs `fn` with copyFile calling `before(src)` first, for blob files. */
  // A blob is copied from the file opened without following links (io.copyRegularFile):
  // the moment it can vanish is that open, after it was looked up.
  async function onBlobCopy<R>(before: (src: string) => Promise<void>, fn: () => Promise<R>): Promise<R> {
    const real = fs.promises.open;
    fs.promises.open = (async (p: fs.PathLike, flags?: string | number, mode?: number) => {
      if (String(p).endsWith('.blob') && typeof flags === 'number') await before(String(p));
      return real(p, flags, mode);
    }) as typeof real;
    try {
      return await fn();
    } finally {
      fs.promises.open = real;
    }
  }

  it('a blob file that vanishes while it is copied (no pack): BLOB_MISSING, nothing registered', async (t) => {
    const { s, dep, clock } = await siteWithBackup(t);
    const v = s.varDir;
    const before = [snapshot(path.join(v, 'backups')), snapshot(path.join(v, 'blobstoragebackups'))];
    let gone = '';
    const err = await onBlobCopy(
      async (src) => {
        if (!gone) {
          gone = src;
          fs.renameSync(src, `${src}.away`);
        }
      },
      () => backupDeployment(dep, 'backup', { now: clock.now }),
    ).catch((e) => e);
    assert.ok(PloneBackupError.is(err, 'BLOB_MISSING'), String(err?.stack ?? err));
    assert.ok(err.message.includes(path.basename(gone)), err.message);
    assert.deepEqual([snapshot(path.join(v, 'backups')), snapshot(path.join(v, 'blobstoragebackups'))], before);
    assert.deepEqual(tempLeftovers(v), []);
    fs.renameSync(`${gone}.away`, gone);
    const r = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r.filestorage.action, 'incremental');
    await s.site.close();
    count('blob vanishes mid-copy');
  });

  it('a pack that removes the blob being copied: the backup starts over and is whole', async (t) => {
    const { s, dep, clock } = await siteWithBackup(t);
    // Every blob copy of the first attempt waits for the pack, which removes old revisions.
    let packing: Promise<unknown> | undefined;
    const r = nth(
      await onBlobCopy(
        async () => {
          packing ??= s.site.writer.pack();
          await packing;
        },
        () => backupDeployment(dep, 'backup', { now: clock.now }),
      ),
      0,
    );
    assert.equal(r.attempts, 2);
    assert.equal(r.filestorage.action, 'full');
    await s.site.close();
    assert.deepEqual(await generationBlobFiles(r.blobGeneration!), await referencedBlobs(s.file));
    assert.equal(await recoverMd5(foldersFor(nth(dep.storages, 0), 'backup').repo), md5File(s.file));
    assert.deepEqual(tempLeftovers(s.varDir), []);
    count('pack removes a blob mid-copy');
  });

  it('Data.fs replaced by a pack while it is read: the backup is the file it opened, the next one sees the pack', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const site = await sampleSite(t, { file });
    const oids: Buffer[] = [];
    for (let i = 0; i < 40; i++) oids.push(await site.addDocument(`doc ${i}`, 'y'.repeat(3000)));
    for (const o of oids.slice(0, 20)) await site.editDocument(o, 'edited', 'z'.repeat(100));
    const clock = fakeClock();
    for (const gzip of [false, true]) {
      await site.addDocument('before the backup');
      const unpacked = fs.readFileSync(file);
      const real = fileLayer.open;
      let packed = 0;
      // The piece's temp file is created once the first committed bytes were read.
      fileLayer.open = async (p, flags, mode) => {
        if (!packed && /\.fsz?\./.test(path.basename(p))) {
          packed++;
          await site.writer.pack();
        }
        return real(p, flags, mode);
      };
      let r;
      try {
        r = await backup({ file, repository: repo, full: true, gzip, now: clock.now });
      } finally {
        fileLayer.open = real;
      }
      assert.equal(packed, 1);
      assert.equal(r.end, unpacked.length, 'the backup holds the whole file it opened');
      assert.equal(await recoverMd5(repo), md5File(path.join(dir, 'Data.fs.old')));
      assert.ok(fs.statSync(file).size < unpacked.length, 'the pack made Data.fs smaller');
      const r2 = await backup({ file, repository: repo, gzip, quick: true, now: clock.now });
      assert.equal(r2.action, 'full', r2.reason);
      assert.match(r2.reason, /pack|shr|changed|differ/);
      assert.equal(await recoverMd5(repo), md5File(file));
      count('Data.fs packed mid-read');
    }
  });

  it('Data.fs cut short while it is read: a committed prefix or SOURCE_CHANGED, never a torn copy', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const site = await sampleSite(t, { file });
    // Bigger than one 4 MiB read, so the cut can fall between two reads.
    for (let i = 0; i < 10; i++) await site.addDocument(`doc ${i}`, String(i).repeat(1024 * 1024));
    await site.close();
    const original = fs.readFileSync(file);
    const clock = fakeClock();
    for (const cut of [original.length - 1, Math.floor(original.length * 0.7), Math.floor(original.length / 3), 100]) {
      fs.writeFileSync(file, original);
      const real = fileLayer.open;
      fileLayer.open = async (p, flags, mode) => {
        if (/\.fs\./.test(path.basename(p))) fs.truncateSync(file, cut);
        return real(p, flags, mode);
      };
      let r;
      try {
        r = await backup({ file, repository: repo, full: true, now: clock.now });
      } catch (e) {
        assert.ok(PloneBackupError.is(e, 'SOURCE_CHANGED') || PloneBackupError.is(e, 'FS_CORRUPT'), String((e as Error).stack));
        count('Data.fs cut mid-read');
        continue;
      } finally {
        fileLayer.open = real;
      }
      // What was backed up is a committed prefix of the original.
      const got = await recoverMd5(repo);
      const end = r.end;
      const prefix = path.join(dir, 'prefix.fs');
      fs.writeFileSync(prefix, original.subarray(0, end));
      assert.equal(got, md5File(prefix));
      assert.equal((await committedEnd(prefix)).end, end, 'the backup does not end at a transaction boundary');
      count('Data.fs cut mid-read');
    }
  });
});

process.on('exit', () => recordFigures(FIG, 'counts', counts));
