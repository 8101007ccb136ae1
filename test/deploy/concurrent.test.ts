/**
 * Objects in motion, for a whole deployment: a writer in another process
 * keeps committing documents and blobs (pausing between vote and finish at
 * times, and in the second test packing now and then, which renames Data.fs
 * and removes old blob revisions) while this process runs backup after
 * backup. Every completed backup must restore into a consistent site: every
 * blob record of the restored Data.fs has its file, the generation holds
 * exactly the referenced files, the index matches. A backup that met a
 * vanished blob either started over or failed with a typed error, and then
 * registered nothing: at the end every piece has a complete generation.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { backupDeployment, checkDeployment, discoverDeployment, drillDeployment, listDeployment, PloneBackupError, type StorageBackupResult } from '../../src/engine/internal';
import { fakeClock } from '../support/fixtures';
import { tmpDir } from '../support/fs';
import { startWriter } from '../support/processes';
import { nth } from '../support/must';

async function backupsWhileWriting(t: Parameters<typeof tmpDir>[0] & { diagnostic: (m: string) => void }, opts: { pack: boolean; iterations: number; seed: number }) {
  const root = tmpDir(t);
  const writer = await startWriter(t, { root, seed: opts.seed });
  const dep = await discoverDeployment(root, { keep: 1000 });
  const clock = fakeClock('2026-04-01-08-00-00', 1);
  let done = 0;
  let restarted = 0;
  const failures: string[] = [];
  const kinds = { full: 0, incremental: 0, none: 0 };
  for (let i = 0; i < opts.iterations; i++) {
    await sleep(5 + (i % 4) * 5); // let the writer commit a little
    // Every third backup races a pack: the writer packs right after its next commit,
    // while this backup reads Data.fs and links or copies blob files.
    if (opts.pack && i % 3 === 1) writer.pack();
    let res: StorageBackupResult;
    try {
      res = nth(await backupDeployment(dep, i % 10 === 9 ? 'fullbackup' : 'backup', { now: clock.now, retries: 3 }), 0);
    } catch (e) {
      // Only a pack racing the backup may make it fail, and then with a typed, clear error.
      assert.ok(PloneBackupError.is(e), `an untyped failure: ${(e as Error).stack}`);
      assert.ok(['SOURCE_CHANGED', 'SOURCE_MISSING'].includes(e.code), `unexpected ${e.code}: ${e.message}`);
      assert.ok(opts.pack, `a failure without any pack: ${e.message}`);
      failures.push(e.message);
      continue;
    }
    kinds[res.filestorage.action]++;
    if (res.attempts > 1) restarted++;
    done++;
    // Restore what the backup registered and prove it.
    const drill = nth(await drillDeployment(dep), 0);
    assert.ok(drill.ok, `iteration ${i}: the drill of ${drill.stamp} failed: ${drill.problems.join('; ')}`);
    assert.deepEqual(drill.missingBlobs, []);
    assert.ok(drill.indexOk);
    if (res.blobGeneration) {
      assert.equal(drill.stamp, res.filestorage.stamp);
      assert.equal(res.blobFiles, drill.blobFiles, `iteration ${i}: the generation holds exactly the referenced blob files`);
      assert.equal(drill.bytes, res.filestorage.end);
    }
  }
  const stats = await writer.stop();
  t.diagnostic(
    `writer: ${JSON.stringify(stats)}; backups: ${done} done (${JSON.stringify(kinds)}), ${restarted} restarted, ${failures.length} failed${failures.length ? ': ' + failures.join(' | ') : ''}`,
  );
  assert.ok(stats.commits > opts.iterations, 'the writer kept writing');
  assert.ok(stats.paused > 0, 'the writer paused between vote and finish');
  assert.ok(done >= opts.iterations * 0.8, `too many failed backups: ${failures.join(' | ')}`);
  assert.ok(kinds.incremental > 0 && kinds.full > 0);
  if (opts.pack) assert.ok(stats.packs > 0 && stats.removedBlobs > 0, 'the writer packed and removed blob revisions');

  // A last backup of the final, quiet state.
  await backupDeployment(dep, 'backup', { now: clock.now });
  const views = await listDeployment(dep);
  for (const c of nth(nth(views, 0).groups, 0).chains) {
    for (const p of [c.full, ...c.incrementals]) assert.equal(p.blob.status, 'match', `${p.stamp}: blob generation ${p.blob.status}`);
  }
  if (opts.pack) {
    // After the packs, every point in time is restored again (older generations must not have lost files).
    const drills = await drillDeployment(dep, { all: true });
    // One point in time per backup that wrote a piece ('none' writes nothing).
    assert.ok(drills.length >= kinds.full + kinds.incremental, `${drills.length} generations drilled for ${JSON.stringify(kinds)}`);
    for (const d of drills) assert.ok(d.ok, `${d.stamp}: ${d.problems.join('; ')}`);
  }
  // check looks at every generation on disk against the state of its piece.
  const findings = (await checkDeployment(dep)).filter((f) => f.severity !== 'info');
  assert.deepEqual(findings, []);
}

describe('backups while a writer commits', () => {
  it('every backup restores consistently (35 backups, votes paused before finish)', async (t) => {
    await backupsWhileWriting(t, { pack: false, iterations: 35, seed: 7 });
  });

  it('every backup restores consistently while the writer packs (45 backups, 15 packs racing them)', async (t) => {
    await backupsWhileWriting(t, { pack: true, iterations: 45, seed: 11 });
  });
});
