/**
 * The blob pool (our own deployments' default) proves: a full backup's
 * generation lists every blob file of its state; an incremental's names the
 * generation it continues and lists only the new piece's files, copying only
 * those into the pool; each blob file is in the pool once; every generation
 * restores to exactly the files its state references (full and incremental
 * restores); retention and deletion remove exactly the pool files no kept
 * generation names, also after a pack; switching from hard-link trees links
 * their files instead of copying them; and manifests that are not what we
 * write (a missing or younger parent, wrong totals, paths out of the pool, a
 * link in the pool) are refused by restore and reported by list and check.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  backupDeployment,
  checkBackups,
  type Deployment,
  deleteGeneration,
  discoverDeployment,
  generationFiles,
  listDeployment,
  listGenerations,
  parseBlobRelPath,
  poolDir,
  readManifest,
  restoreDeployment,
  sweepPool,
} from '../../src/engine/internal';
import { referencedBlobs, rejectsWith } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { blobContents, blobFiles, content, md5File, tempLeftovers, type TestHooks, tmpDir } from '../support/fs';
import { makeSite, type Site } from '../support/site';
import { nth } from '../support/must';

const BASE = 'blobstorage';

async function site(t: TestHooks): Promise<{ s: Site; dep: Deployment; blobs: string; pool: string }> {
  const root = tmpDir(t);
  const s = await makeSite(t, root, { docs: 2, files: 3 });
  const dep = await discoverDeployment(root);
  assert.equal(dep.settings.blobFormat, 'pool', "the pool is our own deployments' default");
  const blobs = path.join(s.varDir, 'blobstoragebackups');
  return { s, dep, blobs, pool: poolDir(blobs, BASE) };
}

const manifestOf = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as { parent?: string; count: number; bytes: number; files: [string, number][]; version: number };
const gen = async (blobs: string, stamp: string) => (await listGenerations(blobs, BASE)).find((g) => g.stamp === stamp)!;

describe('blob pool: backups in O(new blobs)', () => {
  it('a full backup lists all; an incremental names its parent and copies only the new files; restores give exactly each state', async (t) => {
    const { s, dep, blobs, pool } = await site(t);
    const clock = fakeClock('2026-06-01-10-00-00', 3600);
    const r1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    const stamp1 = r1.filestorage.stamp!;
    assert.equal(r1.blobGeneration, path.join(blobs, `${BASE}.${stamp1}.json`));
    const refs1 = await referencedBlobs(s.file);
    const m1 = manifestOf(r1.blobGeneration!);
    assert.equal(m1.version, 2);
    assert.equal(m1.parent, undefined);
    assert.deepEqual(
      m1.files.map(([r]) => r),
      refs1,
    );
    assert.equal(m1.count, 3);
    assert.equal(r1.copied, 3);
    assert.deepEqual(blobFiles(pool), refs1);
    assert.equal(fs.readFileSync(path.join(pool, '.layout'), 'utf8').trim(), 'bushy');
    const states = [{ stamp: stamp1, md5: md5File(s.file), blobs: blobContents(s.blobDir) }];

    // Two incrementals: each adds two files (a new upload, a new revision of an old one).
    let oid: Buffer | undefined;
    for (let i = 0; i < 2; i++) {
      oid = await s.site.uploadFile(`new-${i}.pdf`, content(`new ${i}`, 5000 + i), oid);
      await s.site.uploadFile(`other-${i}.pdf`, content(`other ${i}`));
      const before = new Set(blobFiles(pool));
      const r = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
      assert.equal(r.filestorage.action, 'incremental');
      const m = manifestOf(r.blobGeneration!);
      assert.equal(m.parent, states.at(-1)!.stamp, 'it adds to the generation of the piece it continues');
      const refs = await referencedBlobs(s.file);
      assert.deepEqual(
        m.files.map(([x]) => x),
        refs.filter((x) => !before.has(x)),
        'only the new files are listed',
      );
      assert.equal(m.files.length, 2);
      assert.equal(r.copied, 2, 'only the new files are copied');
      assert.equal(m.count, refs.length);
      assert.equal(r.blobFiles, refs.length);
      assert.deepEqual(blobFiles(pool), [...new Set([...before, ...refs])].sort());
      assert.deepEqual([...(await generationFiles(await gen(blobs, r.filestorage.stamp!), 'bushy')).keys()].sort(), refs);
      states.push({ stamp: r.filestorage.stamp!, md5: md5File(s.file), blobs: blobContents(s.blobDir) });
    }
    await s.site.close();
    assert.deepEqual(tempLeftovers(s.varDir), []);

    // The listing and check see whole generations.
    const [view] = await listDeployment(dep);
    const pieces = view!.groups[0]!.chains[0]!;
    assert.deepEqual(
      [pieces.full, ...pieces.incrementals].map((p) => [p.blob.status, p.blob.files]),
      [
        ['match', 3],
        ['match', 5],
        ['match', 7],
      ],
    );
    assert.deepEqual(
      (await checkBackups(dep)).filter((f) => f.severity === 'error'),
      [],
    );

    // Every state restores exactly: full restores of the oldest, then incremental ones forward.
    for (const [i, st] of states.entries()) {
      await restoreDeployment(dep, { date: st.stamp, keepOld: false, incremental: i > 0 });
      assert.equal(md5File(s.file), st.md5, `Data.fs of ${st.stamp}`);
      assert.deepEqual(blobContents(s.blobDir), st.blobs, `the blob files of ${st.stamp}`);
    }
    // And the oldest again from the newest (a full restore, files linked from the pool).
    await restoreDeployment(dep, { date: states[0]!.stamp, keepOld: false });
    assert.deepEqual(blobContents(s.blobDir), states[0]!.blobs);
  });

  it('a blob file deleted from the live site after it was backed up does not stop incrementals: the pool has it, check names it', async (t) => {
    const { s, dep, pool } = await site(t);
    const clock = fakeClock();
    await backupDeployment(dep, 'backup', { now: clock.now });
    const [victim] = await referencedBlobs(s.file);
    fs.rmSync(path.join(s.blobDir, victim!));
    await s.site.addDocument('more');
    const r = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r.filestorage.action, 'incremental');
    assert.ok(fs.existsSync(path.join(pool, victim!)));
    await s.site.close();
    const restored = tmpDir(t);
    void restored;
    await restoreDeployment(dep, { keepOld: false });
    assert.ok(fs.existsSync(path.join(s.blobDir, victim!)), 'the restore puts it back');
  });

  it('retention and deletion remove exactly the pool files no kept generation names, also after a pack', async (t) => {
    const { s, dep, blobs, pool } = await site(t);
    dep.settings.keep = 1;
    const clock = fakeClock();
    const r1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    const old = await referencedBlobs(s.file);
    // Replace every file: after a pack only the new revisions are referenced.
    for (const [i, rel] of old.entries()) await s.site.uploadFile(`n${i}.pdf`, content(`n${i}`), parseBlobRelPath(rel, 'bushy')!.oid);
    const r2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(manifestOf(r2.blobGeneration!).parent, r1.filestorage.stamp);
    // A stray temp file and an orphan (a run killed after copying) are swept too.
    fs.writeFileSync(path.join(path.dirname(path.join(pool, old[0]!)), '.plone-backup-x.blob.1.abcd.blob'), 'partial');
    fs.mkdirSync(path.join(pool, '0x00', '0x00', '0x00', '0x00', '0x00', '0x00', '0x09', '0x99'), { recursive: true });
    const orphan = '0x00/0x00/0x00/0x00/0x00/0x00/0x09/0x99/0x0300000000000001.blob';
    fs.writeFileSync(path.join(pool, orphan), 'orphan');
    await s.site.writer.pack();
    const after = await referencedBlobs(s.file);
    assert.equal(after.length, old.length);
    assert.ok(
      after.every((r) => !old.includes(r)),
      'the pack dropped the first revisions',
    );
    const r3 = nth(await backupDeployment(dep, 'fullbackup', { now: clock.now }), 0);
    assert.equal(manifestOf(r3.blobGeneration!).parent, undefined);
    // keep = 1: the first chain (two generations) is gone, and with it what only it named.
    assert.deepEqual(
      (await listGenerations(blobs, BASE)).map((g) => g.name),
      [`${BASE}.${r3.filestorage.stamp}.json`],
    );
    assert.deepEqual(blobFiles(pool), after, 'the pool holds exactly what the kept generation names');
    assert.ok(r3.removed.includes(path.join(pool, orphan)));
    assert.deepEqual(tempLeftovers(pool), []);

    // Deleting a chain sweeps as well: a file only its incremental named goes with it.
    const late = await s.site.uploadFile('late.pdf', content('late'));
    const r4 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    const added = manifestOf(r4.blobGeneration!).files.map(([x]) => x);
    assert.equal(added.length, 1);
    await s.site.uploadFile('late.pdf', content('later'), late);
    await s.site.writer.pack();
    dep.settings.keep = 0; // keep everything: only the deletion removes
    await backupDeployment(dep, 'fullbackup', { now: clock.now });
    const d = await deleteGeneration(dep, 'main', 'backup', r3.filestorage.stamp!);
    assert.ok(d.removed.includes(path.join(pool, added[0]!)), 'the first revision of late.pdf, named only by the deleted chain');
    assert.deepEqual(blobFiles(pool), await referencedBlobs(s.file));
    await s.site.close();
  });

  it('switching from hard-link trees: the first pool generation links their files instead of copying them', async (t) => {
    const { s, dep, blobs, pool } = await site(t);
    const clock = fakeClock();
    dep.settings.blobFormat = 'dir';
    const r1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.ok(fs.statSync(r1.blobGeneration!).isDirectory());
    dep.settings.blobFormat = 'pool';
    await s.site.uploadFile('x.pdf', content('x'));
    const r2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    const m = manifestOf(r2.blobGeneration!);
    assert.equal(m.parent, undefined, 'the continued piece has no pool generation: all files are listed');
    assert.equal(m.count, 4);
    assert.equal(r2.linked, 3);
    assert.equal(r2.copied, 1);
    for (const rel of blobFiles(path.join(r1.blobGeneration!, BASE))) {
      assert.equal(fs.statSync(path.join(pool, rel)).ino, fs.statSync(path.join(r1.blobGeneration!, BASE, rel)).ino);
    }
    // Both kinds list and restore side by side.
    const [view] = await listDeployment(dep);
    assert.deepEqual(
      view!.groups[0]!.chains[0]!.incrementals.map((p) => p.blob.status),
      ['match'],
    );
    assert.equal((await listGenerations(blobs, BASE)).length, 2);
    await s.site.close();
    await restoreDeployment(dep, { date: r1.filestorage.stamp, keepOld: false });
    assert.deepEqual(blobFiles(s.blobDir), blobFiles(path.join(r1.blobGeneration!, BASE)));
  });

  it('only_blobs writes full pool generations, copying only what the pool lacks', async (t) => {
    const { s, dep, pool } = await site(t);
    dep.settings.onlyBlobs = true;
    const clock = fakeClock();
    const r1 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r1.copied, 3);
    await s.site.uploadFile('y.pdf', content('y'));
    const r2 = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r2.copied, 1);
    assert.equal(manifestOf(r2.blobGeneration!).count, 4);
    assert.deepEqual(blobFiles(pool), await referencedBlobs(s.file));
    await s.site.close();
  });
});

describe('blob pool: manifests that are not what we write', () => {
  async function chain(t: TestHooks) {
    const x = await site(t);
    const clock = fakeClock();
    const r1 = nth(await backupDeployment(x.dep, 'backup', { now: clock.now }), 0);
    await x.s.site.uploadFile('a.pdf', content('a'));
    const r2 = nth(await backupDeployment(x.dep, 'backup', { now: clock.now }), 0);
    await x.s.site.close();
    return { ...x, first: r1.blobGeneration!, second: r2.blobGeneration!, stamp2: r2.filestorage.stamp! };
  }
  const edit = (file: string, fn: (m: Record<string, unknown>) => void) => {
    const m = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    fn(m);
    fs.writeFileSync(file, JSON.stringify(m));
  };

  for (const [what, change, why] of [
    ['its parent is missing', (c: Awaited<ReturnType<typeof chain>>) => fs.rmSync(c.first), /parent generation .* is missing/],
    ['its parent is not older', (c: Awaited<ReturnType<typeof chain>>) => edit(c.second, (m) => (m.parent = '2099-01-01-00-00-00')), /parent is not an older stamp/],
    ['its count is wrong', (c: Awaited<ReturnType<typeof chain>>) => edit(c.second, (m) => (m.count = 99)), /counts 99 files/],
    [
      'an entry leaves the pool',
      (c: Awaited<ReturnType<typeof chain>>) => edit(c.second, (m) => ((m.files as unknown[][])[0]![0] = '../../../../etc/passwd')),
      /is not a blob path/,
    ],
    ['it is not JSON', (c: Awaited<ReturnType<typeof chain>>) => fs.writeFileSync(c.second, '{"version":2,'), /not valid JSON|not a JSON/],
  ] as const) {
    it(`${what}: restore refuses it (MANIFEST_BAD, nothing changed), list and check report it`, async (t) => {
      const c = await chain(t);
      change(c);
      const before = { md5: md5File(c.s.file), blobs: blobContents(c.s.blobDir) };
      const e = await rejectsWith(restoreDeployment(c.dep, { date: c.stamp2, keepOld: false }), 'MANIFEST_BAD');
      assert.match(e.message, why);
      assert.equal(md5File(c.s.file), before.md5);
      assert.deepEqual(blobContents(c.s.blobDir), before.blobs);
      const [view] = await listDeployment(c.dep);
      const p = view!.groups[0]!.chains[0]!.incrementals[0]!;
      assert.equal(p.blob.status, 'unsafe');
      const findings = await checkBackups(c.dep);
      assert.ok(
        findings.some((f) => f.code === 'GENERATION_UNSAFE' && f.stamp === c.stamp2),
        JSON.stringify(findings.map((f) => f.code)),
      );
      // Nothing is swept on a guess: the pool keeps every file while a manifest cannot be read.
      const inPool = blobFiles(c.pool);
      await sweepPool(path.dirname(c.pool), BASE);
      assert.deepEqual(blobFiles(c.pool), inPool);
    });
  }

  it('a pool file replaced by a link is UNSAFE for restore and check; one missing makes the generation incomplete', async (t) => {
    const c = await chain(t);
    const m = await readManifest(await gen(path.dirname(c.pool), c.stamp2));
    const rel = m!.files[0]![0];
    fs.rmSync(path.join(c.pool, rel));
    fs.symlinkSync('/etc/passwd', path.join(c.pool, rel));
    await rejectsWith(restoreDeployment(c.dep, { keepOld: false }), 'UNSAFE');
    let findings = await checkBackups(c.dep);
    assert.ok(findings.some((f) => f.code === 'GENERATION_UNSAFE' && f.stamp === c.stamp2));
    fs.rmSync(path.join(c.pool, rel));
    findings = await checkBackups(c.dep);
    const f = findings.find((x) => x.code === 'GENERATION_INCOMPLETE' && x.stamp === c.stamp2);
    assert.ok(f, JSON.stringify(findings.map((x) => x.code)));
    assert.match(f.message, new RegExp(rel.replace(/[.]/g, '\\.')));
    await rejectsWith(restoreDeployment(c.dep, { keepOld: false }), 'BLOB_MISSING');
  });
});
