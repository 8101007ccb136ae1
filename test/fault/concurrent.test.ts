/**
 * Proves that two runs at once never corrupt each other: one waits for the
 * other, or (with --lock-wait 0) refuses with a clear LOCKED message, and
 * afterwards every backup verifies and restores.
 *
 * The runs are real child processes of the CLI bundle, slowed down by the
 * crash hook (STEP_DELAY_MS: a pause after every disk step) so that they do
 * overlap: the second is started once the first holds its lock.
 *
 * - two deployment backups of one site; two repozo -B on one repository;
 * - a backup started during a restore, and a restore started during a backup;
 * - two restores at once;
 * - a snapshot (another lock: it runs beside the restore) while a restore
 *   replaces Data.fs and the blob files under it.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { backup, backupDeployment, discoverDeployment, drillDeployment, foldersFor, listGenerations } from '../../src/engine/internal';
import { assertConsistent, referencedBlobs } from '../support/assert';
import { type HookedRun, recordFigures, runHooked } from '../support/crash';
import { fakeClock } from '../support/fixtures';
import { blobContents, blobFiles, content, md5File, tempLeftovers, type TestHooks, tmpDir } from '../support/fs';
import { recoverMd5, registeredStamps, verifyClean } from '../support/repo';
import { makeSite, sampleSite } from '../support/site';
import { nth } from '../support/must';

const FIG = 'concurrent';
let cases = 0;

const SLOW = { STEP_DELAY_MS: '25' };
/** For a run that must still hold its lock when another node process has started (slow on a loaded machine). */
const SLOWER = { STEP_DELAY_MS: '200' };

/** Resolves once `lockFile` names a run doing `what`. */
async function heldBy(lockFile: string, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    try {
      if (JSON.parse(fs.readFileSync(lockFile, 'utf8')).what === what) return;
    } catch {
      // not there yet, or half written
    }
    await sleep(5);
  }
  throw new Error(`${lockFile} never held by ${what}`);
}

async function site(t: TestHooks) {
  const root = tmpDir(t);
  const s = await makeSite(t, root, { docs: 3, files: 3 });
  const dep = await discoverDeployment(root);
  const clock = fakeClock();
  await backupDeployment(dep, 'backup', { now: clock.now });
  await s.site.addDocument('later');
  await s.site.uploadFile('later.pdf', content('later'));
  await backupDeployment(dep, 'backup', { now: clock.now });
  await s.site.addDocument('even later');
  await s.site.close();
  const repo = foldersFor(nth(dep.storages, 0), 'backup').repo;
  return { root, s, dep, repo, lock: path.join(repo, '.plone-backup.lock') };
}

function locked(r: HookedRun, what: string): void {
  assert.equal(r.status, 1, `${what}: ${r.stderr}`);
  assert.match(r.stderr, /is in use by another plone-backup run \(pid \d+/, what);
  assert.match(r.stderr, /Wait for it to finish/, what);
}

function ok(r: HookedRun, what: string): void {
  assert.equal(r.status, 0, `${what} failed: ${r.stderr}`);
}

/** Everything verifies and the newest backup restores the live Data.fs with every blob. */
async function allGood(root: string, repo: string, file: string): Promise<void> {
  await verifyClean(repo);
  assert.equal(await recoverMd5(repo), md5File(file));
  const dep = await discoverDeployment(root);
  for (const d of await drillDeployment(dep, { all: true })) assert.ok(d.ok, `${d.stamp}: ${d.problems.join('; ')}`);
  assert.deepEqual(tempLeftovers(root), []);
  assert.ok(!fs.existsSync(path.join(repo, '.plone-backup.lock')));
}

describe('two runs at once', () => {
  it('two backups of one deployment: the second waits, or refuses with --lock-wait 0', async (t) => {
    const { root, s, repo, lock } = await site(t);
    // Waiting.
    const a = runHooked(['backup', '--dir', root], { env: SLOW });
    await heldBy(lock, 'backup');
    const b = runHooked(['backup', '--dir', root], { env: SLOW });
    ok(await a, 'first backup');
    ok(await b, 'second backup');
    await allGood(root, repo, s.file);
    // Refusing.
    const { root: root2, s: s2, repo: repo2, lock: lock2 } = await site(t);
    const c = runHooked(['backup', '--dir', root2], { env: SLOW });
    await heldBy(lock2, 'backup');
    const d = await runHooked(['fullbackup', '--dir', root2, '--lock-wait', '0']);
    locked(d, 'second backup');
    ok(await c, 'first backup');
    await allGood(root2, repo2, s2.file);
    cases += 2;
  });

  it('two repozo -B on one repository', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const site = await sampleSite(t, { file });
    for (let i = 0; i < 5; i++) await site.addDocument(`d${i}`);
    await backup({ file, repository: repo, now: fakeClock().now });
    await site.addDocument('more');
    await site.close();
    const args = ['repozo', '-B', '-Q', '-z', '-f', file, '-r', repo];
    const a = runHooked(args, { env: SLOW });
    await heldBy(path.join(repo, '.plone-backup.lock'), 'backup');
    const b = runHooked([...args, '-F'], { env: SLOW });
    ok(await a, 'first repozo');
    ok(await b, 'second repozo');
    const c = runHooked([...args, '-F'], { env: SLOWER });
    await heldBy(path.join(repo, '.plone-backup.lock'), 'backup');
    const d = await runHooked([...args, '--lock-wait=0']);
    assert.equal(d.status, 1);
    assert.match(d.stderr, /in use by another plone-backup run/);
    ok(await c, 'third repozo');
    await verifyClean(repo);
    assert.equal(await recoverMd5(repo), md5File(file));
    assert.equal((await registeredStamps(repo)).length, 4);
    cases += 2;
  });

  it('a backup during a restore, and a restore during a backup', async (t) => {
    const { root, s, repo, lock, dep } = await site(t);
    const stamps = await registeredStamps(repo);
    // Restore to the first state; a backup started meanwhile refuses, then one that waits.
    const before = md5File(s.file);
    const r = runHooked(['restore', nth(stamps, 0), '--yes', '--dir', root], { env: SLOWER });
    await heldBy(lock, 'restore');
    locked(await runHooked(['backup', '--dir', root, '--lock-wait', '0']), 'backup during restore');
    // Waits as long as the slowed restore may take on a loaded machine (the default is 10 s).
    const w = runHooked(['backup', '--dir', root, '--lock-wait', '600']);
    ok(await r, 'restore');
    ok(await w, 'waiting backup');
    assert.notEqual(md5File(s.file), before);
    await assertConsistent(s.file, s.blobDir);
    await allGood(root, repo, s.file);
    // A restore during a backup: refuses with --lock-wait 0 and changes nothing; then one that waits.
    const s2 = await sampleSite(t, { open: true, file: s.file, blobDir: s.blobDir });
    await s2.uploadFile('newer.pdf', content('newer'));
    await s2.close();
    const live = md5File(s.file);
    const liveBlobs = blobContents(s.blobDir);
    const b = runHooked(['backup', '--dir', root], { env: SLOWER });
    await heldBy(lock, 'backup');
    locked(await runHooked(['restore', '--yes', '--dir', root, '--lock-wait', '0', '--full-restore']), 'restore during backup');
    assert.equal(md5File(s.file), live, 'the refused restore changed Data.fs');
    assert.deepEqual(blobContents(s.blobDir), liveBlobs);
    const w2 = runHooked(['restore', nth(stamps, 1), '--yes', '--dir', root, '--lock-wait', '600']);
    ok(await b, 'backup');
    ok(await w2, 'waiting restore');
    await assertConsistent(s.file, s.blobDir);
    assert.equal(md5File(s.file), await recoverMd5(repo, stamps[1]));
    // the backup made before the restore still restores the newer state
    const newest = (await registeredStamps(repo)).at(-1)!;
    assert.equal(await recoverMd5(repo, newest), live);
    await verifyClean(repo);
    for (const d of await drillDeployment(dep, { all: true })) assert.ok(d.ok, `${d.stamp}: ${d.problems.join('; ')}`);
    assert.deepEqual(tempLeftovers(root), []);
    cases += 4;
  });

  it('two restores at once', async (t) => {
    const { root, s, repo, lock } = await site(t);
    const stamps = await registeredStamps(repo);
    const a = runHooked(['restore', nth(stamps, 0), '--yes', '--dir', root], { env: SLOW });
    await heldBy(lock, 'restore');
    const b = runHooked(['restore', nth(stamps, 1), '--yes', '--dir', root], { env: SLOW });
    ok(await a, 'first restore');
    ok(await b, 'second restore');
    assert.equal(md5File(s.file), await recoverMd5(repo, stamps[1]), 'the restore that waited came last');
    await assertConsistent(s.file, s.blobDir);
    assert.deepEqual(tempLeftovers(root), []);
    await verifyClean(repo);
    cases++;
  });

  it('a snapshot (its own lock) while a restore replaces Data.fs and the blobs under it', async (t) => {
    const { root, s, repo, lock } = await site(t);
    const stamps = await registeredStamps(repo);
    for (const [i, date] of [nth(stamps, 0), nth(stamps, 1), nth(stamps, 0)].entries()) {
      const r = runHooked(['restore', date, '--yes', '--dir', root, '--full-restore'], { env: { STEP_DELAY_MS: '10' } });
      await heldBy(lock, 'restore');
      const snap = await runHooked(['snapshot', '--dir', root]);
      ok(snap, `snapshot ${i}`);
      ok(await r, `restore ${i}`);
      await assertConsistent(s.file, s.blobDir);
    }
    // Every snapshot is a whole state: its Data.fs restores, with every blob it references.
    const dep = await discoverDeployment(root);
    const { repo: snaps, blobs } = foldersFor(nth(dep.storages, 0), 'snapshot');
    const gens = await listGenerations(blobs, 'blobstorage');
    for (const stamp of await registeredStamps(snaps)) {
      const out = path.join(root, `check-${stamp}.fs`);
      const { recover } = await import('../../src/engine/internal');
      await recover({ repository: snaps, output: out, date: stamp });
      const g = gens.find((x) => x.stamp === stamp);
      assert.ok(g, `snapshot ${stamp} has no blob generation`);
      const held = new Set(blobFiles(g.content!));
      for (const rel of await referencedBlobs(out)) assert.ok(held.has(rel), `snapshot ${stamp} lacks ${rel}`);
    }
    await verifyClean(snaps);
    cases += 3;
  });
});

process.on('exit', () => recordFigures(FIG, 'cases', { concurrentCases: cases }));
