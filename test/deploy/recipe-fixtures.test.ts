/**
 * The real collective.recipe.backup's backups (test/fixtures/recipe, made by
 * its own bin/backup, bin/snapshotbackup and bin/zipbackup with the real
 * repozo), taken over as they are: run in the buildout folder with nothing
 * but its buildout.cfg, every stamp restores to the Data.fs and the blob
 * files that the recipe's own restore gives (expected.json). One case per
 * blob format the recipe writes: folders with hard links at a location
 * outside the buildout, .tar.gz under a part with another name,
 * incremental .tar + .snar + .delta.tar, snapshots, zip.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkBackups, discoverDeployment, drillDeployment, listDeployment, restoreDeployment, type Kind } from '../../src/engine/internal';
import { blobContents, md5File, tmpDir, type TestHooks } from '../support/fs';
import { ROOT } from '../support/paths';

const RECIPE = path.join(ROOT, 'test', 'fixtures', 'recipe');

interface Expected {
  datafs_md5: string;
  datafs_size: number;
  blobs: Record<string, string>;
}

const CASES: { name: string; kind: Kind; siblings?: string[] }[] = [
  { name: 'archive-incremental', kind: 'backup' },
  { name: 'named-compressed', kind: 'backup' },
  { name: 'offsite-rsync', kind: 'backup', siblings: ['offsite-rsync-backups'] },
  { name: 'snapshot', kind: 'snapshot' },
  { name: 'zip', kind: 'zip' },
];

function expected(name: string): Record<string, Expected> {
  return JSON.parse(fs.readFileSync(path.join(RECIPE, name, 'expected.json'), 'utf8')) as Record<string, Expected>;
}

/** A writable copy of the case (and the folders beside it that its buildout.cfg names), as the recipe left it. */
function copyCase(t: TestHooks, c: (typeof CASES)[number]): string {
  const top = tmpDir(t);
  for (const n of [c.name, ...(c.siblings ?? [])]) fs.cpSync(path.join(RECIPE, n), path.join(top, n), { recursive: true, verbatimSymlinks: true });
  return path.join(top, c.name);
}

function assertRestored(root: string, want: Expected, what: string): void {
  const file = path.join(root, 'var', 'filestorage', 'Data.fs');
  assert.equal(fs.statSync(file).size, want.datafs_size, `${what}: Data.fs size`);
  assert.equal(md5File(file), want.datafs_md5, `${what}: Data.fs bytes`);
  assert.deepEqual(blobContents(path.join(root, 'var', 'blobstorage')), want.blobs, `${what}: blob files`);
}

describe('the real collective.recipe.backup fixtures, taken over from buildout.cfg', () => {
  for (const c of CASES) {
    const stamps = Object.keys(expected(c.name)).sort();
    it(`${c.name}: list shows every stamp with its blob backup`, async (t) => {
      const root = copyCase(t, c);
      const dep = await discoverDeployment(root);
      const [view] = await listDeployment(dep);
      const group = view!.groups.find((g) => g.kind === c.kind)!;
      const gens = group.chains.flatMap((ch) => [ch.full, ...ch.incrementals]);
      assert.deepEqual(gens.map((g) => g.stamp).sort(), stamps);
      for (const g of gens) assert.notEqual(g.blob.status, 'none', `${g.stamp} has its blob backup`);
      for (const g of gens) assert.notEqual(g.blob.status, 'unsafe', `${g.stamp}: ${g.blob.problem}`);
    });

    it(`${c.name}: check reads every blob backup (archives and deltas too) and finds each holds its state; drill proves the backups`, async (t) => {
      const root = copyCase(t, c);
      const dep = await discoverDeployment(root);
      const [view] = await listDeployment(dep, { verifyFiles: true });
      const gens = view!.groups.find((g) => g.kind === c.kind)!.chains.flatMap((ch) => [ch.full, ...ch.incrementals]);
      for (const g of gens) assert.equal(g.blob.status, 'match', `${g.stamp}: ${g.blob.status} ${g.blob.problem ?? ''} ${(g.blob.missing ?? []).join(' ')}`);
      const findings = await checkBackups(dep);
      assert.deepEqual(
        findings.filter((f) => f.severity === 'error'),
        [],
      );
      if (c.kind === 'backup') {
        const drills = await drillDeployment(dep, { all: true });
        assert.equal(drills.length, stamps.length);
        for (const d of drills) assert.ok(d.ok, `${d.stamp}: ${d.problems.join('; ')}`);
      }
    });

    for (const stamp of stamps) {
      it(`${c.name}: restoring ${stamp} gives what the recipe's restore gives`, async (t) => {
        const root = copyCase(t, c);
        const dep = await discoverDeployment(root);
        const [r] = await restoreDeployment(dep, { kind: c.kind, date: c.kind === 'zip' ? undefined : stamp });
        assert.equal(r!.stamp, stamp);
        assertRestored(root, expected(c.name)[stamp]!, `${c.name} ${stamp}`);
      });
    }

    if (stamps.length > 1) {
      it(`${c.name}: restoring every stamp in turn on one site, oldest to newest and back`, async (t) => {
        const root = copyCase(t, c);
        const dep = await discoverDeployment(root);
        const want = expected(c.name);
        for (const stamp of [...stamps, ...stamps.slice(0, -1).reverse()]) {
          await restoreDeployment(dep, { kind: c.kind, date: stamp, keepOld: false });
          assertRestored(root, want[stamp]!, `${c.name} ${stamp} in turn`);
        }
      });
    }
  }

  it('a buildout folder with the backups and no var/filestorage or var/blobstorage yet restores, creating them', async (t) => {
    const c = CASES.find((x) => x.name === 'offsite-rsync')!;
    const root = copyCase(t, c);
    fs.rmSync(path.join(root, 'var'), { recursive: true });
    const dep = await discoverDeployment(root);
    const stamps = Object.keys(expected(c.name)).sort();
    await restoreDeployment(dep, { date: stamps[1] });
    assertRestored(root, expected(c.name)[stamps[1]!]!, 'onto an empty machine');
  });
});
