/**
 * Proves that a deployment command killed at any point loses nothing.
 *
 * `backup`, `snapshot`, `zipbackup`, `fullbackup --keep 1` (retention) and
 * `restore` run as child processes of the CLI bundle with the crash hook, and
 * are SIGKILLed right after every counted disk step (write, fsync, close,
 * rename, link, unlink, rm, mkdir, copyFile, symlink), or at up to 60 points
 * spread over the run. After each kill:
 *
 * - backups: the live Data.fs and blob files are untouched; every state
 *   registered before restores byte for byte as before (and its blob
 *   generation is unchanged), except the old chains retention was told to
 *   delete; every registered piece matches its .dat; then the next backup
 *   succeeds, leaves no temp file, every chain verifies, and the newest
 *   state restores to the live Data.fs with every blob file;
 * - restore: Data.fs is the whole old or the whole new file (an incremental
 *   restore may leave an uncommitted tail after the old state), the blob
 *   folder holds every file of the Data.fs beside it with the right bytes,
 *   and nothing of any other state; the backups are untouched; running the
 *   restore again finishes it.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  backupDeployment,
  discoverDeployment,
  extractTar,
  foldersFor,
  commandKind,
  listGenerations,
  listRepository,
  restoreDeployment,
  type BackupCommand,
} from '../../src/engine/internal';
import { assertConsistent, assertIndexFits, referencedBlobs } from '../support/assert';
import { crashLoop, type KillReport, recordFigures } from '../support/crash';
import { fakeClock } from '../support/fixtures';
import { blobContents, content, md5File, snapshot, tempLeftovers, tmpDir, type TestHooks } from '../support/fs';
import { committedMd5, liveState, recoverMd5, registeredStamps, repoStates, verifyAfterKill, verifyClean } from '../support/repo';
import { generationBlobFiles, generationFile, makeSite } from '../support/site';
import { nth } from '../support/must';

const FIG = 'crash-deploy';
const reports: KillReport[] = [];

/** A small site with `gens` backups of `kind` made at a fake clock, then more commits. */
async function baseSite(t: TestHooks, dir: string, kinds: BackupCommand[]): Promise<void> {
  const s = await makeSite(t, dir, { docs: 2, files: 2 });
  const dep = await discoverDeployment(dir);
  const clock = fakeClock('2026-03-01-10-00-00', 60);
  let n = 0;
  let fileOid: Buffer | undefined;
  for (const kind of kinds) {
    await backupDeployment(dep, kind, { now: clock.now });
    n++;
    await s.site.addDocument(`doc after backup ${n}`);
    const oid = await s.site.uploadFile(`file${n}.pdf`, content(`f${n}`, 1200 + n * 100), fileOid);
    fileOid ??= oid;
  }
  await s.site.close();
}

/**
 * Generation folders and archives of a blob backup folder: name -> content
 * snapshot; a pool generation's content is the files it holds, read in the
 * pool (the pool folder itself grows with every backup, as it should).
 */
async function generations(blobs: string): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  if (!fs.existsSync(blobs)) return out;
  for (const n of fs.readdirSync(blobs)) {
    if (n.startsWith('.plone-backup') || n === 'latest' || n.endsWith('.pool')) continue;
    const p = path.join(blobs, n);
    if (n.endsWith('.json')) out[n] = await poolHeld(p).catch((e: Error) => ({ error: e.message }));
    else out[n] = fs.statSync(p).isDirectory() ? snapshot(p) : { archive: md5File(p) };
  }
  return out;
}

/** What a pool generation holds: relative path -> md5 of its file in the pool. */
async function poolHeld(gen: string): Promise<Record<string, string>> {
  const held: Record<string, string> = {};
  for (const rel of await generationBlobFiles(gen)) held[rel] = md5File(generationFile(gen, rel));
  return held;
}

/**
 * The crash loop for one backup command: the state before, the checks after
 * each kill, and the next run.
 */
async function backupCrash(t: TestHooks, name: string, kind: BackupCommand, baseKinds: BackupCommand[], args: string[], keep?: number): Promise<void> {
  const base = tmpDir(t);
  await baseSite(t, base, baseKinds);
  const dep0 = await discoverDeployment(base);
  const s0 = nth(dep0.storages, 0);
  const { repo: repo0, blobs: blobs0 } = foldersFor(s0, commandKind(kind));
  const rel = (p: string) => path.relative(base, p);
  const live = liveState(s0.file, s0.blobDir);
  const states = await repoStates(repo0);
  const gens = await generations(blobs0);
  const known = Object.keys(states);
  // Retention (keep, and keepSnapshots/keepZips for the other kinds) deletes old states on purpose.
  const rotates = keep !== undefined || kind !== 'backup';
  let nextRuns = 0;
  const report = await crashLoop(t, {
    name,
    base,
    args: (dir) => [...args, '--dir', dir],
    check: async (dir, run) => {
      const dep = await discoverDeployment(dir, keep !== undefined ? { keep } : {});
      const s = nth(dep.storages, 0);
      const repo = path.join(dir, rel(repo0));
      const blobs = path.join(dir, rel(blobs0));
      // The live site is never touched.
      assert.deepEqual(liveState(s.file, s.blobDir), live, 'the live Data.fs or blob files changed');
      // Every piece a .dat registers matches it.
      await verifyAfterKill(repo, known);
      // Never a registered piece without its blob generation.
      const nowStamps = await registeredStamps(repo);
      const genStamps = new Set((await listGenerations(blobs, 'blobstorage')).map((g) => g.stamp));
      for (const st of nowStamps) assert.ok(genStamps.has(st), `the registered piece ${st} has no blob generation`);
      // Every state registered before restores as before, with its blob generation as it was.
      const newFull = nowStamps.find((x) => !known.includes(x));
      const after = await generations(blobs);
      for (const [stamp, sum] of Object.entries(states)) {
        const got = await recoverMd5(repo, stamp);
        if (rotates && newFull && got !== sum) {
          // Retention may have started: an old state is then gone, never restored wrongly.
          assert.match(got, /^error:/, `${stamp} restores to other bytes`);
          continue;
        }
        assert.equal(got, sum, `${stamp} no longer restores to the same bytes`);
      }
      for (const [g, snap] of Object.entries(gens)) {
        if (rotates && newFull && after[g] === undefined) continue;
        assert.deepEqual(after[g], snap, `the blob generation ${g} changed`);
      }
      // The next run (for retention: a plain backup, which often has nothing new) cleans up and succeeds.
      await backupDeployment(dep, keep !== undefined ? 'backup' : kind, { lockWaitMs: 5000 });
      nextRuns++;
      if (keep !== undefined) {
        // What the killed run was to delete is gone now: one chain, no older piece or generation.
        const { files } = await listRepository(repo);
        const fulls = files.filter((f) => f.full);
        assert.equal(fulls.length, keep, `${fulls.length} full backups left, keep is ${keep}`);
        const oldest = nth(fulls, 0).stamp;
        assert.deepEqual(
          files.filter((f) => f.stamp < oldest).map((f) => f.name),
          [],
          'older pieces left',
        );
        assert.deepEqual(
          fs.readdirSync(repo).filter((n) => /^\d{4}(-\d\d){5}\./.test(n) && n.slice(0, 19) < oldest),
          [],
          'older .dat/.index left',
        );
        assert.deepEqual(
          (await listGenerations(blobs, 'blobstorage')).filter((g) => g.stamp! < oldest).map((g) => g.name),
          [],
          'older blob generations left',
        );
      }
      assert.deepEqual(tempLeftovers(dir), [], 'temp files left after the next run');
      assert.ok(!fs.existsSync(path.join(repo, '.plone-backup.lock')), 'the lock is still there');
      assert.ok((await verifyClean(repo)) > 0);
      const newest = (await registeredStamps(repo)).at(-1)!;
      assert.equal(await recoverMd5(repo), live.data, 'the newest backup does not restore the live Data.fs');
      const g = (await listGenerations(blobs, 'blobstorage')).find((x) => x.stamp === newest);
      assert.ok(g, `no blob generation for ${newest}`);
      let held: Record<string, string>;
      if (g.kind === 'dir') held = blobContents(g.content!);
      else if (g.kind === 'pool') held = await poolHeld(g.path);
      else {
        const x = path.join(dir, 'extracted');
        fs.mkdirSync(x);
        await extractTar(g.path, x, { gzip: g.kind === 'tar.gz', prefix: 'blobstorage' });
        held = blobContents(x);
      }
      assert.deepEqual(held, live.blobs, `the generation ${g.name} does not hold exactly the live blob files`);
      if (run.signal !== 'SIGKILL') assert.equal(run.status, 0);
    },
  });
  assert.equal(nextRuns, report.tried);
  // The repository locks (filestorage and blob folders) are killed at too.
  assert.ok(report.lockSteps >= 3, `${name}: ${report.lockSteps} lock steps`);
  reports.push(report);
  recordFigures(FIG, name, report);
}

describe('a deployment command killed at any step loses nothing', () => {
  it('backup (incremental with a new blob generation)', async (t) => {
    await backupCrash(t, 'backup (incremental + blob generation)', 'backup', ['backup', 'backup'], ['backup']);
  });

  it('backup (the first, full)', async (t) => {
    await backupCrash(t, 'backup (first full + blob generation)', 'backup', [], ['backup']);
  });

  it('snapshot (with keepSnapshots rotation)', async (t) => {
    await backupCrash(t, 'snapshot (full + rotation of the oldest)', 'snapshot', ['snapshot', 'snapshot'], ['snapshot']);
  });

  it('zipbackup (with keepZips rotation)', async (t) => {
    await backupCrash(t, 'zipbackup (.fsz + tar, rotation)', 'zipbackup', ['zipbackup'], ['zipbackup']);
  });

  it('retention: fullbackup --keep 1 deletes the older chains', async (t) => {
    await backupCrash(t, 'fullbackup --keep 1 (retention)', 'backup', ['backup', 'backup', 'fullbackup', 'backup'], ['fullbackup', '--keep', '1'], 1);
  });

  /**
   * Restores: the old live state (S_old) and the state restored (S_new), each a
   * Data.fs and its blob files. After a kill the live site must be one of them.
   */
  async function restoreCrash(t: TestHooks, name: string, incremental: boolean): Promise<void> {
    const base = tmpDir(t);
    await baseSite(t, base, ['backup', 'backup', 'backup']);
    let dep0 = await discoverDeployment(base);
    const s0 = nth(dep0.storages, 0);
    const repo0 = foldersFor(s0, 'backup').repo;
    const stamps = await registeredStamps(repo0);
    assert.equal(stamps.length, 3);
    let date: string | undefined;
    if (incremental) {
      // The live site is the first backup's state; the restore of the newest appends the rest.
      await restoreDeployment(dep0, { date: stamps[0], keepOld: false });
      dep0 = await discoverDeployment(base);
    } else date = stamps[1]; // the live site is newer: a full restore to the middle state
    const rel = (p: string) => path.relative(base, p);
    const oldState = liveState(s0.file, s0.blobDir);
    const states = await repoStates(repo0);
    let newState: { data: string; blobs: Record<string, string> } | undefined;
    let reruns = 0;
    const report = await crashLoop(t, {
      name,
      base,
      args: (dir) => ['restore', ...(date ? [date] : []), '--yes', '--json', '--dir', dir],
      // Every step of a restore is a kill point (not 60 spread over them).
      max: 100,
      afterCount: async (dir, run) => {
        assert.equal(JSON.parse(run.stdout)[0].mode, incremental ? 'incremental' : 'full');
        // The repository lock and ZODB's Data.fs.lock (created, as the site has none, and removed) are steps.
        const locks = (run.ops ?? []).filter((l) => /\.plone-backup\.lock|Data\.fs\.lock/.test(l));
        assert.ok(locks.some((l) => / open .*\/Data\.fs\.lock$/.test(l)) && locks.some((l) => / rm .*\/Data\.fs\.lock$/.test(l)), `Data.fs.lock: ${locks.join('; ')}`);
        assert.ok(
          locks.some((l) => / link .*\.plone-backup\.lock$/.test(l)),
          `the repository lock: ${locks.join('; ')}`,
        );
        newState = liveState(path.join(dir, rel(s0.file)), path.join(dir, rel(s0.blobDir!)));
        assert.notEqual(newState.data, oldState.data);
        await assertConsistent(path.join(dir, rel(s0.file)), path.join(dir, rel(s0.blobDir!)));
      },
      check: async (dir) => {
        const file = path.join(dir, rel(s0.file));
        const blobDir = path.join(dir, rel(s0.blobDir!));
        const repo = path.join(dir, rel(repo0));
        // Data.fs: the whole old or the whole new one (an incremental restore may
        // leave an uncommitted tail, which ZODB cuts off, after the old state).
        const whole = md5File(file);
        let isNew = whole === newState!.data;
        if (!isNew && whole !== oldState.data) {
          assert.ok(incremental, 'Data.fs is neither the old nor the new file');
          const c = await committedMd5(file);
          assert.equal(c.md5, oldState.data, 'the committed part of Data.fs is not the old state');
          isNew = false;
        }
        await assertIndexFits(file);
        // Blob files: every file of the Data.fs that is there, with its bytes; nothing foreign.
        const want = isNew ? newState!.blobs : oldState.blobs;
        const have = blobContents(blobDir);
        for (const [f, sum] of Object.entries(want)) assert.equal(have[f], sum, `blob ${f} of the ${isNew ? 'new' : 'old'} Data.fs is ${have[f] ? 'changed' : 'missing'}`);
        for (const [f, sum] of Object.entries(have)) {
          assert.ok(oldState.blobs[f] === sum || newState!.blobs[f] === sum, `blob ${f} belongs to neither state`);
        }
        assert.deepEqual(await referencedBlobs(file).then((r) => r.filter((x) => !have[x])), [], 'referenced blobs missing');
        // The backups are untouched.
        assert.deepEqual(await repoStates(repo), states);
        // Running the restore again finishes it.
        const dep = await discoverDeployment(dir);
        await restoreDeployment(dep, { date, lockWaitMs: 5000 });
        reruns++;
        const fin = liveState(file, blobDir);
        assert.equal(fin.data, newState!.data, 'the rerun did not restore Data.fs');
        for (const [f, sum] of Object.entries(newState!.blobs)) assert.equal(fin.blobs[f], sum, `after the rerun, blob ${f} is wrong`);
        for (const [f, sum] of Object.entries(fin.blobs)) assert.ok(oldState.blobs[f] === sum || newState!.blobs[f] === sum, `after the rerun, blob ${f} is foreign`);
        await assertConsistent(file, blobDir);
        assert.deepEqual(tempLeftovers(dir), [], 'temp files left after the rerun');
      },
    });
    assert.equal(reruns, report.tried);
    reports.push(report);
    recordFigures(FIG, name, report);
  }

  it('restore (full, to an older state)', async (t) => {
    await restoreCrash(t, 'restore (full, to an older date)', false);
  });

  it('restore (incremental, appending the newer pieces)', async (t) => {
    await restoreCrash(t, 'restore (incremental)', true);
  });
});

// Totals for the README.
process.on('exit', () => {
  if (reports.length) recordFigures(FIG, 'total', { killPoints: reports.reduce((a, r) => a + r.tried, 0), killed: reports.reduce((a, r) => a + r.killed, 0) });
});
