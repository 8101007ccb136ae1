/**
 * Generations and retention prove: with keep=2 the two newest full chains
 * stay, each with its incrementals and their blob generations; older pieces,
 * .dat, .index and generations go, but only once the new backup is complete
 * (a failing backup removes nothing); the order is the stamps', never the
 * files' mtimes; numbered generations of the recipe and foreign files are
 * left alone; snapshots keep their own count.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyRetention, backupDeployment, discoverDeployment, listGenerations } from '../../src/engine/internal';
import { referencedBlobs, rejectsWith } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { content, snapshot, tmpDir } from '../support/fs';
import { makeSite } from '../support/site';
import { nth } from '../support/must';

/** Sets every file and folder under `dir` to the same time (a misleading mtime for the order). */
function touchAll(dir: string, when: Date): void {
  for (const n of fs.readdirSync(dir)) fs.lutimesSync(path.join(dir, n), when, when);
}

describe('retention of generations', () => {
  it('keep=2 keeps two full chains with their incrementals and generations, by stamp', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 1 });
    const dep = await discoverDeployment(root, { keep: 2 });
    dep.settings.blobFormat = 'dir'; // the recipe's trees and `latest` (the pool's retention: blobpool.test.ts)
    const clock = fakeClock('2026-05-01-00-00-00', 3600);
    const repo = path.join(s.varDir, 'backups');
    const blobs = path.join(s.varDir, 'blobstoragebackups');
    const stamps: { stamp: string; full: boolean }[] = [];
    let n = 0;
    const step = async (kind: 'backup' | 'fullbackup') => {
      await s.site.uploadFile(`f${n}`, content(`f${n++}`));
      const r = nth(await backupDeployment(dep, kind, { now: clock.now }), 0);
      stamps.push({ stamp: r.filestorage.stamp!, full: r.filestorage.action === 'full' });
      return r;
    };
    // chain A: full + 2 incrementals; chain B: full + 1; chain C: full + 1
    await step('backup');
    await step('backup');
    await step('backup');
    await step('fullbackup');
    // Make chain A look newest by mtime and chain B oldest: retention must not care.
    touchAll(repo, new Date('2020-01-01T00:00:00Z'));
    fs.utimesSync(path.join(repo, `${nth(stamps, 0).stamp}.fsz`), new Date('2030-01-01T00:00:00Z'), new Date('2030-01-01T00:00:00Z'));
    await step('backup');
    assert.equal(stamps.filter((x) => x.full).length, 2);
    const allA = stamps.slice(0, 3).map((x) => x.stamp);
    for (const st of allA) assert.ok(fs.existsSync(path.join(blobs, `blobstorage.${st}`)), 'two chains: nothing removed yet');

    // A numbered recipe generation and a foreign file are left alone.
    fs.mkdirSync(path.join(blobs, 'blobstorage.0', 'blobstorage'), { recursive: true });
    fs.writeFileSync(path.join(repo, 'README.txt'), 'mine');

    // The third full backup fails (a blob is missing): nothing may be removed.
    await s.site.uploadFile('doomed', content('doomed'));
    const refs = await referencedBlobs(s.file);
    const victim = refs.find((r) => !fs.existsSync(path.join(blobs, `blobstorage.${nth(stamps, 4).stamp}`, 'blobstorage', r)))!;
    const saved = fs.readFileSync(path.join(s.blobDir, victim));
    fs.rmSync(path.join(s.blobDir, victim));
    const before = { repo: snapshot(repo), blobs: snapshot(blobs) };
    await rejectsWith(backupDeployment(dep, 'fullbackup', { now: clock.now }), 'BLOB_MISSING');
    assert.deepEqual({ repo: snapshot(repo), blobs: snapshot(blobs) }, before, 'a failed backup removes nothing');
    fs.writeFileSync(path.join(s.blobDir, victim), saved);

    // Now it succeeds: chain A goes, B and C stay.
    const r = await backupDeployment(dep, 'fullbackup', { now: clock.now });
    stamps.push({ stamp: nth(r, 0).filestorage.stamp!, full: true });
    await step('backup');
    const kept = stamps.slice(3).map((x) => x.stamp);
    const names = fs.readdirSync(repo).sort();
    for (const st of allA) {
      assert.ok(!names.some((x) => x.startsWith(st)), `${st} of chain A is removed (${names.join(' ')})`);
      assert.ok(!fs.existsSync(path.join(blobs, `blobstorage.${st}`)), `generation ${st} is removed`);
    }
    for (const st of kept) {
      assert.ok(
        names.some((x) => x === `${st}.fsz` || x === `${st}.deltafsz`),
        `${st} is kept`,
      );
      assert.ok(names.includes(`${st}.index`));
      assert.ok(fs.existsSync(path.join(blobs, `blobstorage.${st}`, 'blobstorage')), `generation ${st} is kept`);
    }
    assert.ok(names.includes(`${nth(stamps, 3).stamp}.dat`) && names.includes(`${nth(stamps, 5).stamp}.dat`));
    assert.ok(names.includes('README.txt'));
    assert.ok(fs.existsSync(path.join(blobs, 'blobstorage.0')));
    assert.equal(fs.readlinkSync(path.join(blobs, 'latest')), `blobstorage.${kept[kept.length - 1]}`);
    // The kept generations are still whole after their predecessors (link sources) went.
    const newest = path.join(blobs, `blobstorage.${kept[kept.length - 1]}`, 'blobstorage');
    for (const rel of await referencedBlobs(s.file)) assert.ok(fs.existsSync(path.join(newest, rel)), rel);
  });

  it('applyRetention orders by the stamps in the names, not by mtime', async (t) => {
    const root = tmpDir(t);
    const repo = path.join(root, 'backups');
    const blobs = path.join(root, 'blobstoragebackups');
    fs.mkdirSync(repo);
    const stamps = ['2026-01-01-00-00-00', '2026-01-02-00-00-00', '2026-01-03-00-00-00'];
    // Full pieces of one database: its magic and first transaction id (how retention knows them as its own).
    const first = '03f0000000000001';
    const piece = Buffer.concat([Buffer.from('FS21'), Buffer.from(first, 'hex')]);
    stamps.forEach((st, i) => {
      for (const n of [`${st}.fs`, `${st}.dat`, `${st}.index`]) fs.writeFileSync(path.join(repo, n), n.endsWith('.fs') ? piece : 'x');
      fs.mkdirSync(path.join(blobs, `blobstorage.${st}`, 'blobstorage'), { recursive: true });
      // The oldest gets the newest mtime.
      const when = new Date(Date.UTC(2030, 0, 3 - i));
      for (const n of [`${st}.fs`, `${st}.dat`, `${st}.index`]) fs.utimesSync(path.join(repo, n), when, when);
      fs.utimesSync(path.join(blobs, `blobstorage.${st}`), when, when);
    });
    fs.writeFileSync(path.join(blobs, `blobstorage.${stamps[0]}.tar`), 'archived');
    const me = { file: path.join(root, 'Data.fs'), first };
    const removed = await applyRetention(repo, blobs, 'blobstorage', 2, me);
    assert.deepEqual(
      fs.readdirSync(repo).sort(),
      stamps.slice(1).flatMap((st) => [`${st}.dat`, `${st}.fs`, `${st}.index`]),
    );
    assert.deepEqual(
      (await listGenerations(blobs, 'blobstorage')).map((g) => g.name),
      stamps.slice(1).map((st) => `blobstorage.${st}`),
    );
    assert.equal(removed.length, 5);
    // keep=1 with one chain left over: nothing else to remove.
    assert.deepEqual(await applyRetention(repo, blobs, 'blobstorage', 2, me), []);
  });

  it('snapshots keep keepSnapshots full backups in their own folders', async (t) => {
    const root = tmpDir(t);
    const s = await makeSite(t, root, { files: 1 });
    fs.writeFileSync(path.join(root, 'plone-backup.json'), JSON.stringify({ keep: 5, keepSnapshots: 1 }));
    const dep = await discoverDeployment(root);
    const clock = fakeClock();
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      await s.site.addDocument(`d${i}`);
      const r = nth(await backupDeployment(dep, 'snapshot', { now: clock.now }), 0);
      assert.equal(r.filestorage.action, 'full');
      made.push(r.filestorage.stamp!);
    }
    const snaps = path.join(s.varDir, 'snapshotbackups');
    assert.deepEqual(
      fs.readdirSync(snaps).filter((n) => /\.fsz?$/.test(n)),
      [`${made[2]}.fsz`],
    );
    assert.deepEqual(
      (await listGenerations(path.join(s.varDir, 'blobstoragesnapshots'), 'blobstorage')).map((g) => g.stamp),
      [made[2]],
    );
    assert.ok(!fs.existsSync(path.join(s.varDir, 'backups')), 'regular backups untouched');
  });
});
