/**
 * Compatibility with collective.recipe.backup proves both directions. What
 * the recipe leaves on disk (repozo's gzip pieces, made by the real repozo,
 * and blob backups in each of its ways: timestamped folders
 * `blobstorage.<STAMP>/blobstorage/`, numbered `blobstorage.0`, a `latest`
 * symlink, `.tar` and `.tar.gz` archives made by the system tar) is listed,
 * checked and restored to every step of the fixture history, byte for byte.
 * And what our `backup` writes is restored by the recipe's bin/restore
 * logic (repozo -R, then a plain recursive copy of the generation's
 * blobstorage/) into a consistent site.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backupDeployment, checkDeployment, type Deployment, discoverDeployment, drillDeployment, listDeployment, recover, restoreDeployment } from '../../src/engine/internal';
import { assertConsistent, rejectsWith } from '../support/assert';
import { fakeClock, fixtureBlobTree, historySteps } from '../support/fixtures';
import { blobContents, content, copy, md5File, snapshot, tmpDir } from '../support/fs';
import { HISTORY } from '../support/paths';
import { runCli } from '../support/processes';
import { makeSite, planOf } from '../support/site';
import { nth } from '../support/must';

/** A buildout deployment with the fixture's final Data.fs and blobstorage, and the recipe's gzip repository. */
function recipeDeployment(root: string): { varDir: string; blobBackups: string } {
  const varDir = path.join(root, 'var');
  copy(path.join(HISTORY, 'var', 'filestorage'), path.join(varDir, 'filestorage'));
  copy(path.join(HISTORY, 'var', 'blobstorage'), path.join(varDir, 'blobstorage'));
  copy(path.join(HISTORY, 'repository-gzip'), path.join(varDir, 'backups'));
  const blobBackups = path.join(varDir, 'blobstoragebackups');
  fs.mkdirSync(blobBackups);
  return { varDir, blobBackups };
}

/** Restores every step by date and checks Data.fs and the blob files against history.json. */
async function restoreEveryStep(dep: Deployment): Promise<void> {
  const s = nth(dep.storages, 0);
  for (const [i, step] of historySteps().entries()) {
    const r = nth(await restoreDeployment(dep, { date: step.stamp, keepOld: false }), 0);
    assert.equal(r.stamp, step.stamp, `step ${i + 1}`);
    assert.deepEqual(r.warnings, [], `step ${i + 1}`);
    assert.equal(md5File(s.file), step.md5, `step ${i + 1}: Data.fs`);
    assert.deepEqual(blobContents(s.blobDir!), step.blobs, `step ${i + 1}: blob files`);
    await assertConsistent(s.file, s.blobDir, `step ${i + 1}`);
  }
}

describe('collective.recipe.backup layouts', () => {
  it('timestamped blob folders with a latest link: listed, checked, restored to every step (incrementally too)', async (t) => {
    const root = tmpDir(t);
    const { blobBackups } = recipeDeployment(root);
    const steps = historySteps();
    for (const [i, step] of steps.entries()) fixtureBlobTree(i, path.join(blobBackups, `blobstorage.${step.stamp}`, 'blobstorage'));
    fs.symlinkSync(`blobstorage.${nth(steps, 5).stamp}`, path.join(blobBackups, 'latest'));
    const dep = await discoverDeployment(root);

    const view = nth(await listDeployment(dep), 0);
    const chains = view.groups.find((g) => g.kind === 'backup')!.chains;
    assert.deepEqual(
      chains.map((c) => [c.full.stamp, ...c.incrementals.map((x) => x.stamp)]),
      [steps.slice(0, 4).map((x) => x.stamp), steps.slice(4).map((x) => x.stamp)],
    );
    const pieces = chains.flatMap((c) => [c.full, ...c.incrementals]);
    for (const [i, p] of pieces.entries()) {
      assert.equal(p.end, nth(steps, i).size, `${p.stamp} ends where step ${i + 1} does`);
      assert.equal(p.lastTid, nth(steps, i).last_tid);
      assert.equal(p.gzip, true);
      assert.equal(p.blob.status, 'match', `${p.stamp}: ${JSON.stringify(p.blob)}`);
      assert.equal(p.blob.files, Object.keys(nth(steps, i).blobs).length);
    }
    const findings = await checkDeployment(dep);
    assert.deepEqual(
      findings.filter((f) => f.severity !== 'info'),
      [],
    );
    const drills = await drillDeployment(dep, { all: true });
    assert.equal(drills.length, 6);
    for (const d of drills) assert.ok(d.ok, `${d.stamp}: ${d.problems.join('; ')}`);

    await restoreEveryStep(dep);
    // An incremental restore within the first chain: step 2 -> step 4 appends two gzip pieces.
    await restoreDeployment(dep, { date: nth(steps, 1).stamp, keepOld: false });
    const plan = nth(await planOf(dep, { date: nth(steps, 3).stamp }), 0);
    assert.equal(plan.mode, 'incremental');
    const r = nth(await restoreDeployment(dep, { date: nth(steps, 3).stamp }), 0);
    assert.equal(r.mode, 'incremental');
    assert.equal(r.bytesWritten, nth(steps, 3).size - nth(steps, 1).size);
    assert.equal(md5File(nth(dep.storages, 0).file), nth(steps, 3).md5);
    assert.deepEqual(blobContents(nth(dep.storages, 0).blobDir!), nth(steps, 3).blobs);
  });

  it('tar and tar.gz archives made by the system tar: listed, checked, restored to every step', async (t) => {
    const root = tmpDir(t);
    const { blobBackups } = recipeDeployment(root);
    const work = tmpDir(t);
    for (const [i, step] of historySteps().entries()) {
      const tree = path.join(work, String(i));
      fixtureBlobTree(i, path.join(tree, 'blobstorage'));
      const gz = i >= 3;
      const out = path.join(blobBackups, `blobstorage.${step.stamp}.tar${gz ? '.gz' : ''}`);
      // The recipe's way (`tar -C blobstorage .`: the tree at the root), and every other
      // step the way earlier plone-backup builds wrote them (under blobstorage/).
      if (i % 2 === 0) execFileSync('tar', [gz ? '-czf' : '-cf', out, '-C', path.join(tree, 'blobstorage'), '.']);
      else execFileSync('tar', [gz ? '-czf' : '-cf', out, '-C', tree, 'blobstorage']);
    }
    const dep = await discoverDeployment(root);
    const view = nth(await listDeployment(dep), 0);
    const pieces = nth(view.groups, 0).chains.flatMap((c) => [c.full, ...c.incrementals]);
    assert.equal(pieces.length, 6);
    for (const p of pieces) assert.equal(p.blob.status, 'archived');
    assert.deepEqual(
      (await checkDeployment(dep)).filter((f) => f.severity !== 'info'),
      [],
    );
    const drills = await drillDeployment(dep, { all: true });
    for (const d of drills) assert.ok(d.ok, `${d.stamp}: ${d.problems.join('; ')}`);
    await restoreEveryStep(dep);
    // A damaged archive is refused before anything changes.
    const last = path.join(blobBackups, `blobstorage.${nth(historySteps(), 5).stamp}.tar.gz`);
    fs.writeFileSync(last, fs.readFileSync(last).subarray(0, 60));
    const before = md5File(nth(dep.storages, 0).file);
    await rejectsWith(restoreDeployment(dep, { incremental: false }), 'ARCHIVE_BAD');
    assert.equal(md5File(nth(dep.storages, 0).file), before);
  });

  it('numbered blobstorage.0 (newest) is used for the newest restore, with a warning', async (t) => {
    const root = tmpDir(t);
    const { blobBackups } = recipeDeployment(root);
    const steps = historySteps();
    fixtureBlobTree(5, path.join(blobBackups, 'blobstorage.0', 'blobstorage'));
    fixtureBlobTree(4, path.join(blobBackups, 'blobstorage.1', 'blobstorage'));
    const dep = await discoverDeployment(root);
    const view = nth(await listDeployment(dep), 0);
    // The listing shows blobstorage.0 with the newest piece (what a restore without a date takes); .1 belongs to no piece it can tell.
    assert.deepEqual(nth(view.groups, 0).unmatchedGenerations, [path.join(blobBackups, 'blobstorage.1')]);
    const newest = nth(view.groups, 0).chains.at(-1)!;
    assert.equal((newest.incrementals.at(-1) ?? newest.full).blob.path, path.join(blobBackups, 'blobstorage.0'));
    const r = nth(await restoreDeployment(dep, { keepOld: false, incremental: false }), 0);
    assert.equal(r.stamp, nth(steps, 5).stamp);
    assert.equal(r.generation, path.join(blobBackups, 'blobstorage.0'));
    assert.equal(r.warnings.length, 1);
    assert.match(nth(r.warnings, 0), /was not made with the filestorage backup/);
    assert.equal(md5File(nth(dep.storages, 0).file), nth(steps, 5).md5);
    assert.deepEqual(blobContents(nth(dep.storages, 0).blobDir!), nth(steps, 5).blobs);
    // A dated restore cannot tell which numbered folder belongs to it.
    await rejectsWith(restoreDeployment(dep, { date: nth(steps, 2).stamp }), 'NOT_FOUND');
  });

  it('a numbered generation lacking files the restored Data.fs needs is refused, or restored with --allow-missing-blobs', async (t) => {
    const root = tmpDir(t);
    const { blobBackups } = recipeDeployment(root);
    const steps = historySteps();
    // blobstorage.0 holds the blobs of step 1, but the newest filestorage backup is step 5.
    fixtureBlobTree(1, path.join(blobBackups, 'blobstorage.0', 'blobstorage'));
    const lacking = Object.keys(nth(steps, 5).blobs).filter((r) => !(r in nth(steps, 1).blobs));
    assert.equal(lacking.length, 3);
    const dep = await discoverDeployment(root);
    const s = nth(dep.storages, 0);
    const before = snapshot(path.dirname(s.file));
    const liveBlobs = blobContents(s.blobDir!);
    const e = await rejectsWith(restoreDeployment(dep, { incremental: false }), 'BLOB_MISSING');
    assert.match(e.message, /blobstorage\.0 was not made with .* lacks 3 blob files the restored Data\.fs needs/);
    assert.deepEqual(snapshot(path.dirname(s.file)), before, 'nothing changed');
    assert.deepEqual(blobContents(s.blobDir!), liveBlobs);
    // --force is about the site's lock, not this.
    await rejectsWith(restoreDeployment(dep, { incremental: false, force: true }), 'BLOB_MISSING');
    assert.deepEqual(snapshot(path.dirname(s.file)), before, 'nothing changed');
    // The command says what to do, in one line, and exits 1.
    const cli = runCli(['restore', '--yes', '--full-restore', '--dir', root]);
    assert.equal(cli.status, 1);
    assert.match(cli.stderr, /lacks 3 blob files .*--allow-missing-blobs/);
    assert.deepEqual(snapshot(path.dirname(s.file)), before, 'nothing changed');
    // --allow-missing-blobs restores what there is, and says what is missing.
    const r = nth(await restoreDeployment(dep, { incremental: false, keepOld: false, allowMissingBlobs: true }), 0);
    assert.equal(md5File(s.file), nth(steps, 5).md5);
    assert.equal(r.warnings.length, 2);
    assert.match(nth(r.warnings, 1), /3 blob files the restored Data\.fs needs are missing/);
  });

  it("our backups restore with the recipe's bin/restore logic: repozo -R, then a copy of blobstorage.<STAMP>/blobstorage/", async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { docs: 3, files: 3 });
    const dep = await discoverDeployment(root);
    // The recipe's layout, as a buildout with a collective.recipe.backup part gets it.
    dep.settings.blobFormat = 'dir';
    const clock = fakeClock('2026-09-01-08-00-00', 600);
    const made: { stamp: string; md5: string; blobs: Record<string, string> }[] = [];
    let oid: Buffer | undefined;
    for (let i = 0; i < 5; i++) {
      oid = await s.site.uploadFile(`doc-${i}.pdf`, content(`recipe ${i}`, 5000), i % 2 ? oid : undefined);
      await s.site.addDocument(`page ${i}`);
      if (i === 3) await s.site.writer.pack();
      const r = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
      made.push({ stamp: r.filestorage.stamp!, md5: md5File(s.file), blobs: blobContents(s.blobDir) });
      // The recipe's `latest` naming: a link to blobstorage.<STAMP>.
      assert.equal(fs.readlinkSync(path.join(s.varDir, 'blobstoragebackups', 'latest')), `blobstorage.${r.filestorage.stamp}`);
    }
    await s.site.close();
    for (const m of made) {
      const target = tmpDir(t);
      // bin/restore: repozo -R -r var/backups -o var/filestorage/Data.fs -D <date>
      await recover({ repository: path.join(s.varDir, 'backups'), output: path.join(target, 'Data.fs'), date: m.stamp });
      // ...then rsync -a blobstoragebackups/blobstorage.<STAMP>/blobstorage/ var/blobstorage (a plain copy here).
      execFileSync('cp', ['-a', path.join(s.varDir, 'blobstoragebackups', `blobstorage.${m.stamp}`, 'blobstorage') + '/.', path.join(target, 'blobstorage')]);
      assert.equal(md5File(path.join(target, 'Data.fs')), m.md5, m.stamp);
      await assertConsistent(path.join(target, 'Data.fs'), path.join(target, 'blobstorage'), m.stamp);
      // Nothing of ours in the copied tree but the blob files and .layout.
      const names = fs.readdirSync(path.join(target, 'blobstorage'));
      assert.deepEqual(
        names.filter((n) => n.startsWith('.')),
        ['.layout'],
      );
      for (const [rel, sum] of Object.entries(blobContents(path.join(target, 'blobstorage')))) assert.equal(m.blobs[rel], sum, rel);
    }
  });
});
