/**
 * Objects in motion: the writer process (test/support/writer-process.ts) commits to Data.fs the way
 * ZODB does (vote writes the transaction with status 'c', a pause, finish
 * flips the status; sometimes tpc_abort truncates a voted transaction; twice
 * a pack renames a new Data.fs into place) while this process runs backup
 * after backup (full and incremental, quick and not, plain and gzip). Every
 * restore must be a prefix of the Data.fs it was taken from that ends exactly
 * on a committed transaction, with the index a scan builds.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileStorageWriter, backup, committedEnd, encodeIndex, openFileStorage, prepareBackup, recover, verify, type BackupResult } from '../../src/engine/internal';
import { referenceIndex } from '../support/fixtures';
import { md5, tmpDir } from '../support/fs';
import { startWriter } from '../support/processes';

interface Restored {
  iteration: number;
  repo: string;
  action: string;
  stamp: string;
  size: number;
  md5: string;
}

describe('backups of a Data.fs being written', () => {
  it('a voted transaction aborted (truncated away) while the backup reads is simply not there', async (t) => {
    const dir = tmpDir(t);
    const data = path.join(dir, 'Data.fs');
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    for (const [first, second] of [
      [5000, 200], // a shorter transaction is committed where the aborted one was
      [5000, 0], // nothing is committed after the abort
      [200, 5000], // a longer one is (it is past the measured size: not copied)
    ] as const) {
      fs.rmSync(data, { force: true });
      const w = await FileStorageWriter.create(data);
      t.after(() => w.close());
      await w.commit({ records: [{ oid: 0, data: Buffer.alloc(100, 1) }] });
      const committed = w.end;
      await w.vote({
        records: [
          { oid: 0, data: Buffer.alloc(first, 2) },
          { oid: 1, data: Buffer.alloc(first, 3) },
        ],
      });
      // The backup measures the file now, with the voted transaction in it...
      const st = await openFileStorage(data);
      try {
        // ...then ZODB's tpc_abort truncates it, and maybe commits another.
        await w.abort();
        if (second) await w.commit({ records: [{ oid: 0, data: Buffer.alloc(second, 4) }] });
        const p = await prepareBackup({ file: data, repository: repo, full: true, now: () => new Date(Date.UTC(2026, 5, 1)) }, st);
        await p.commit();
        const expectedEnd = second && w.end <= st.size ? w.end : committed;
        assert.equal(p.result.end, expectedEnd, `${first}/${second}`);
        const target = path.join(dir, 'restored.fs');
        await recover({ repository: repo, output: target, now: () => new Date(Date.UTC(2027, 0, 1)), keepOld: false, withVerify: true });
        assert.ok(fs.readFileSync(target).equals(fs.readFileSync(data).subarray(0, expectedEnd)));
        assert.equal((await committedEnd(target)).end, expectedEnd);
      } finally {
        await st.fh.close();
        await w.close();
      }
    }
  });

  it('every restore is a committed prefix of the Data.fs it was taken from, with its index', { timeout: 90_000 }, async (t) => {
    const dir = tmpDir(t);
    const data = path.join(dir, 'Data.fs');
    const repos = { plain: path.join(dir, 'plain'), gzip: path.join(dir, 'gzip') };
    fs.mkdirSync(repos.plain);
    fs.mkdirSync(repos.gzip);
    const writer = await startWriter(t, { file: data, seed: 12345, keepGenerations: true, aborts: true, largePages: true, minPauseMs: 1, maxPauseMs: 4 });

    const base = Date.UTC(2026, 5, 1, 12, 0, 0);
    let tick = 0;
    const restored: Restored[] = [];
    const results: { i: number; repo: string; r: BackupResult; quick: boolean; afterPack2: boolean }[] = [];
    const ITERATIONS = 24;
    let afterPack2 = false;
    for (let i = 0; i < ITERATIONS; i++) {
      // Two packs: the first races with the backups, the second is waited for.
      if (i === 8) writer.pack();
      if (i === 16) {
        writer.pack();
        await writer.waitFor('packed 2');
        afterPack2 = true;
      }
      const gzip = i % 2 === 1;
      const repo = gzip ? repos.gzip : repos.plain;
      const quick = i % 4 >= 2;
      const full = i % 7 === 6;
      const r = await backup({ file: data, repository: repo, gzip, quick, full, now: () => new Date(base + tick++ * 1000), lockWaitMs: 0 });
      results.push({ i, repo, r, quick, afterPack2 });
      if (r.action !== 'none') {
        const target = path.join(dir, `restore-${i}.fs`);
        const rec = await recover({ repository: repo, output: target, date: r.stamp, withVerify: true });
        const bytes = fs.readFileSync(target);
        assert.equal(bytes.length, r.end);
        assert.equal(rec.bytes, r.end);
        // It ends exactly on a committed transaction boundary...
        const walk = await committedEnd(target);
        assert.equal(walk.end, bytes.length, `restore ${i} does not end on a committed transaction`);
        assert.equal(walk.lastTid?.toString('hex'), r.lastTid);
        // ...and its index is the one a scan builds.
        const scanned = await referenceIndex(target);
        assert.ok(fs.readFileSync(target + '.index').equals(encodeIndex(scanned.index, scanned.end)), `restore ${i}: wrong index`);
        restored.push({ iteration: i, repo, action: r.action, stamp: r.stamp!, size: bytes.length, md5: md5(bytes) });
        fs.rmSync(target);
        fs.rmSync(target + '.index');
      }
      await new Promise((r) => setTimeout(r, (i * 7) % 15));
    }
    assert.equal(writer.child.exitCode, null, 'the writer was still writing during the last backup');
    const summary = await writer.stop();
    const final = fs.readFileSync(data);
    assert.equal(final.length, summary.end);
    assert.equal((await committedEnd(data)).end, final.length);

    // Every restore is a prefix of the file it was taken from: one of the
    // generations a pack replaced, or the final Data.fs.
    assert.equal(summary.packs, 2);
    const generations = [data + '.gen0', data + '.gen1', data].map((f) => fs.readFileSync(f));
    for (const r of restored) {
      const from = generations.findIndex((g) => g.length >= r.size && md5(g.subarray(0, r.size)) === r.md5);
      assert.ok(from >= 0, `restore of iteration ${r.iteration} (${r.action}, ${r.size} bytes) is not a prefix of any Data.fs`);
    }
    // The first backup of each repository after the second pack noticed it.
    for (const repo of Object.values(repos)) {
      const first = results.find((x) => x.repo === repo && x.afterPack2)!;
      assert.equal(first.r.action, 'full', first.r.reason);
      if (first.i % 7 !== 6) assert.match(first.r.reason, /pack/);
    }
    // The test exercised what it claims to.
    assert.ok(summary.commits > 100, JSON.stringify(summary));
    assert.ok(summary.paused > 0 && summary.aborted > 0 && summary.undone > 0, JSON.stringify(summary));
    const actions = results.map((x) => x.r.action);
    t.diagnostic(`writer: ${JSON.stringify(summary)}; backups: ${actions.join(' ')}`);
    assert.ok(actions.filter((a) => a === 'full').length >= 4, actions.join());
    assert.ok(actions.filter((a) => a === 'incremental').length >= 8, actions.join());
    assert.ok(results.some((x) => x.quick && x.r.action === 'incremental'));
    assert.ok(results.some((x) => !x.quick && x.r.action === 'incremental'));
    assert.ok(new Set(restored.map((r) => r.size)).size >= 10, 'the restores are of different states');

    // Once the writer stopped, one more backup of each repository restores the whole file.
    for (const [kind, repo] of Object.entries(repos)) {
      const r = await backup({ file: data, repository: repo, gzip: kind === 'gzip', now: () => new Date(base + tick++ * 1000) });
      assert.equal(r.end, final.length);
      const target = path.join(dir, `final-${kind}.fs`);
      await recover({ repository: repo, output: target, withVerify: true });
      assert.ok(fs.readFileSync(target).equals(final), kind);
      assert.equal((await verify({ repository: repo })).ok, true);
    }
  });
});
