/**
 * Proves that `plone-backup repozo` killed at any point loses nothing.
 *
 * -B (the first full, an incremental -Q -z, a forced full -F -z -k that also
 * removes the older chain) and -R -o (recover over an existing Data.fs) run as
 * child processes of the CLI bundle with the crash hook and are SIGKILLed
 * right after every counted disk step. After each kill: Data.fs is untouched
 * by a backup; every state registered before still recovers byte for byte
 * (except what -k was told to remove); every registered piece matches its
 * .dat; the next run succeeds, leaves no temp file, every chain verifies and
 * the newest recovers to Data.fs. A killed recover leaves the whole old or
 * the whole new Data.fs (with an index that fits it), and running it again
 * finishes it.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backup, recover } from '../../src/engine/internal';
import { assertIndexFits } from '../support/assert';
import { crashLoop, type KillReport, recordFigures } from '../support/crash';
import { fakeClock } from '../support/fixtures';
import { md5File, tempLeftovers, type TestHooks, tmpDir } from '../support/fs';
import { sampleSite } from '../support/site';
import { recoverMd5, registeredStamps, repoStates, verifyAfterKill, verifyClean } from '../support/repo';

const FIG = 'crash-repozo';
const reports: KillReport[] = [];

/** A Data.fs with `backups` backups in `repo` (gzip, quick), and more commits after each. */
async function base(t: TestHooks, dir: string, backups: number): Promise<void> {
  const file = path.join(dir, 'Data.fs');
  const repo = path.join(dir, 'repo');
  fs.mkdirSync(repo);
  const site = await sampleSite(t, { file });
  for (let i = 0; i < 3; i++) await site.addDocument(`doc ${i}`);
  const clock = fakeClock('2026-03-01-10-00-00', 60);
  for (let i = 0; i < backups; i++) {
    await backup({ file, repository: repo, gzip: true, quick: true, now: clock.now });
    await site.addDocument(`doc after backup ${i}`);
  }
  await site.close();
}

async function backupCrash(t: TestHooks, name: string, backups: number, flags: string[], killOld = false): Promise<void> {
  const dir0 = tmpDir(t);
  await base(t, dir0, backups);
  const live = md5File(path.join(dir0, 'Data.fs'));
  const states = await repoStates(path.join(dir0, 'repo'));
  const known = Object.keys(states);
  let nextRuns = 0;
  const report = await crashLoop(t, {
    name,
    base: dir0,
    args: (dir) => ['repozo', '-B', ...flags, '-f', path.join(dir, 'Data.fs'), '-r', path.join(dir, 'repo')],
    check: async (dir) => {
      const file = path.join(dir, 'Data.fs');
      const repo = path.join(dir, 'repo');
      assert.equal(md5File(file), live, 'Data.fs changed');
      const newer = (await registeredStamps(repo)).some((s) => !known.includes(s));
      if (!killOld || !newer) await verifyAfterKill(repo, known);
      for (const [stamp, sum] of Object.entries(states)) {
        const got = await recoverMd5(repo, stamp);
        if (killOld && newer && got !== sum) {
          assert.match(got, /^error:/, `${stamp} recovers to other bytes`);
          continue;
        }
        assert.equal(got, sum, `${stamp} no longer recovers to the same bytes`);
      }
      // The next run.
      await backup({ file, repository: repo, gzip: true, quick: true, lockWaitMs: 5000, killOld });
      nextRuns++;
      assert.deepEqual(tempLeftovers(dir), [], 'temp files left after the next run');
      assert.ok(!fs.existsSync(path.join(repo, '.plone-backup.lock')));
      await verifyClean(repo);
      assert.equal(await recoverMd5(repo), live, 'the newest backup does not recover Data.fs');
    },
  });
  assert.equal(nextRuns, report.tried);
  // The repository lock (its owner file, the link that takes it, its removal) is killed at too.
  assert.ok(report.lockSteps >= 3, `${name}: ${report.lockSteps} lock steps`);
  reports.push(report);
  recordFigures(FIG, name, report);
}

describe('repozo killed at any step loses nothing', () => {
  it('-B: the first full backup', async (t) => {
    await backupCrash(t, 'repozo -B (first full)', 0, []);
  });

  it('-B -Q -z: an incremental', async (t) => {
    await backupCrash(t, 'repozo -B -Q -z (incremental)', 2, ['-Q', '-z']);
  });

  it('-B -F -z -k: a full that removes the older chain', async (t) => {
    await backupCrash(t, 'repozo -B -F -z -k (full, kill-old)', 2, ['-F', '-z', '-k'], true);
  });

  it('-R -o: recover over an existing Data.fs', async (t) => {
    const dir0 = tmpDir(t);
    await base(t, dir0, 3);
    const repo0 = path.join(dir0, 'repo');
    const stamps = await registeredStamps(repo0);
    const out0 = path.join(dir0, 'restored', 'Data.fs');
    fs.mkdirSync(path.dirname(out0));
    // The output exists (the second state, with its index); the recover writes the newest.
    await recover({ repository: repo0, output: out0, date: stamps[1], keepOld: false });
    const oldMd5 = md5File(out0);
    const newMd5 = await recoverMd5(repo0);
    assert.notEqual(oldMd5, newMd5);
    let reruns = 0;
    const report = await crashLoop(t, {
      name: 'repozo -R -o (over an existing Data.fs)',
      base: dir0,
      args: (dir) => ['repozo', '-R', '-w', '-r', path.join(dir, 'repo'), '-o', path.join(dir, 'restored', 'Data.fs')],
      check: async (dir) => {
        const out = path.join(dir, 'restored', 'Data.fs');
        const got = md5File(out);
        assert.ok(got === oldMd5 || got === newMd5, 'Data.fs is neither the old nor the new file');
        await assertIndexFits(out);
        await recover({ repository: path.join(dir, 'repo'), output: out, withVerify: true });
        reruns++;
        assert.equal(md5File(out), newMd5);
        await assertIndexFits(out);
        assert.deepEqual(tempLeftovers(dir), [], 'temp files left after the rerun');
      },
    });
    assert.equal(reruns, report.tried);
    reports.push(report);
    recordFigures(FIG, report.name, report);
  });
});

process.on('exit', () => {
  if (reports.length) recordFigures(FIG, 'total', { killPoints: reports.reduce((a, r) => a + r.tried, 0), killed: reports.reduce((a, r) => a + r.killed, 0) });
});
