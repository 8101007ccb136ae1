/**
 * The live scan is persisted (issue 11, goal 3): `check` writes where its
 * scan of Data.fs ended (and the blob refs so far) beside the backups, and a
 * later check in another process scans only what was appended. The cache is
 * trusted only when Data.fs proves it (same inode, long enough, the
 * transaction at its end the one recorded): a pack, a cut into the scanned
 * part, or a garbled or crafted file means a scan from the start, with the
 * same findings. The scan can run in a worker thread (the extension host's
 * way), with the same result.
 */
import { describe, it, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  backupDeployment,
  checkLive,
  decodeLiveScan,
  discoverDeployment,
  encodeLiveScan,
  LIVE_SCAN_FILE,
  newLiveScanCache,
  PERSIST_STEP,
  engineWorker,
  type Deployment,
  type Finding,
  type LiveScanReport,
  type StorageConfig,
} from '../../src/engine/internal';
import { fakeClock } from '../support/fixtures';
import { content, tmpDir } from '../support/fs';
import { makeSite, type Site } from '../support/site';

const summary = (f: Finding[]) => f.map((x) => `${x.severity}:${x.code}:${x.blobFile ?? x.file}`).sort();

async function scanned(s: StorageConfig, opts: Parameters<typeof checkLive>[1] = {}): Promise<{ findings: Finding[]; report: LiveScanReport }> {
  let report: LiveScanReport | undefined;
  const findings = await checkLive(s, { ...opts, onScan: (r) => (report = r) });
  assert.ok(report, 'the scan reported');
  return { findings, report };
}

/** A scan from the start that neither reads nor writes the cache file: the truth to compare with. */
const truth = async (s: StorageConfig) => summary(await checkLive(s, { noPersist: true }));

async function setup(t: TestContext): Promise<{ site: Site; dep: Deployment; s: StorageConfig; cacheFile: string }> {
  const root = tmpDir(t);
  const site = await makeSite(t, root, { files: 3 });
  const dep = await discoverDeployment(root);
  await backupDeployment(dep, 'backup', { now: fakeClock().now });
  const s = dep.storages[0]!;
  // One blob file goes missing, so findings are not trivially empty.
  const refs = fs.readdirSync(site.blobDir, { recursive: true }).filter((n) => String(n).endsWith('.blob'));
  fs.rmSync(path.join(site.blobDir, String(refs[0])));
  return { site, dep, s, cacheFile: path.join(site.varDir, 'backups', LIVE_SCAN_FILE) };
}

describe('live scan cache', () => {
  it('is written by a check, and a later check scans only what was appended', async (t) => {
    const { site, s, cacheFile } = await setup(t);
    const first = await scanned(s);
    assert.equal(first.report.from, 'start');
    assert.equal(first.report.start, 4);
    assert.equal(first.report.end, fs.statSync(s.file).size);
    assert.equal(first.report.persisted, true);
    assert.ok(fs.existsSync(cacheFile));
    // No more readable than Data.fs.
    assert.equal(fs.statSync(cacheFile).mode & ~fs.statSync(s.file).mode & 0o777, 0);
    assert.deepEqual(summary(first.findings), await truth(s));
    assert.ok(first.findings.some((f) => f.code === 'BLOB_MISSING'));

    // Nothing new: nothing scanned.
    const again = await scanned(s);
    assert.equal(again.report.from, 'disk');
    assert.equal(again.report.scanned, 0);
    assert.deepEqual(summary(again.findings), summary(first.findings));

    // New transactions (one with a blob, whose file then goes missing too).
    const before = fs.statSync(s.file).size;
    await site.site.addDocument('after the cache');
    await site.site.uploadFile('new.pdf', content('new', 4000));
    const after = fs.statSync(s.file).size;
    const newest = fs
      .readdirSync(site.blobDir, { recursive: true })
      .map(String)
      .filter((n) => n.endsWith('.blob'))
      .sort((a, b) => fs.statSync(path.join(site.blobDir, b)).mtimeMs - fs.statSync(path.join(site.blobDir, a)).mtimeMs)[0]!;
    fs.rmSync(path.join(site.blobDir, newest));
    const next = await scanned(s);
    assert.equal(next.report.from, 'disk');
    assert.equal(next.report.start, before);
    assert.equal(next.report.scanned, after - before, 'scanned bytes = appended bytes');
    assert.equal(next.report.persisted, true);
    assert.deepEqual(summary(next.findings), await truth(s));
    assert.equal(next.findings.filter((f) => f.code === 'BLOB_MISSING').length, 2);
  });

  it('in a worker thread: the same refs and findings, and the cache continues from there', async (t) => {
    const { site, s } = await setup(t);
    assert.ok(engineWorker(), 'the worker file is built beside the engine');
    const off = await scanned(s, { offThread: true });
    assert.equal(off.report.offThread, true);
    assert.equal(off.report.from, 'start');
    assert.deepEqual(summary(off.findings), await truth(s));
    const before = fs.statSync(s.file).size;
    await site.site.uploadFile('more.pdf', content('more', 3000));
    const cache = newLiveScanCache();
    const next = await scanned(s, { offThread: true, cache });
    assert.equal(next.report.from, 'disk');
    assert.equal(next.report.scanned, fs.statSync(s.file).size - before);
    assert.equal(next.report.offThread, true);
    assert.deepEqual(summary(next.findings), await truth(s));
    // A memory cache (the extension's) serves the next check without the file; a
    // small step is not written again (PERSIST_STEP).
    await site.site.addDocument('one more');
    const mem = await scanned(s, { offThread: true, cache });
    assert.equal(mem.report.from, 'memory');
    assert.equal(mem.report.persisted, false);
    assert.ok(mem.report.scanned > 0 && mem.report.scanned < PERSIST_STEP);
    // A cancelled scan in the worker is ABORTED (and the worker is gone: the test ends).
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(checkLive(s, { offThread: true, noPersist: true, signal: ac.signal }), { code: 'ABORTED' });
  });

  it('a pack (a new, shorter Data.fs) means a scan from the start', async (t) => {
    const { site, s } = await setup(t);
    await site.site.uploadFile('replaced.pdf', content('v1', 3000));
    await scanned(s);
    await site.site.writer.pack();
    const r = await scanned(s);
    assert.equal(r.report.from, 'start');
    assert.equal(r.report.start, 4);
    assert.deepEqual(summary(r.findings), await truth(s));
  });

  it('a truncated tail: cut past the scanned end, the scan continues; cut into it, it starts over', async (t) => {
    const { site, s } = await setup(t);
    await site.site.close();
    await scanned(s);
    const end = fs.statSync(s.file).size;
    // A torn transaction appended (never committed), then truncated away again.
    fs.appendFileSync(s.file, Buffer.alloc(100, 0x41));
    const torn = await scanned(s);
    assert.equal(torn.report.from, 'disk');
    assert.equal(torn.report.end, end, 'the torn tail is not committed');
    fs.truncateSync(s.file, end);
    assert.equal((await scanned(s)).report.from, 'disk');
    // Cut into the scanned part: the last transaction is gone.
    fs.truncateSync(s.file, end - 10);
    const cut = await scanned(s);
    assert.equal(cut.report.from, 'start');
    assert.ok(cut.report.end < end - 10);
    assert.deepEqual(summary(cut.findings), await truth(s));
  });

  it('a garbled, crafted or misplaced cache file is ignored and replaced', async (t) => {
    const { site, s, cacheFile } = await setup(t);
    await site.site.close();
    await scanned(s);
    const good = fs.readFileSync(cacheFile);
    const entry = decodeLiveScan(good, path.resolve(s.file))!;
    assert.ok(entry && entry.end === fs.statSync(s.file).size);
    const want = await truth(s);
    const tries: [string, Buffer][] = [
      ['a flipped byte', Buffer.from(good.map((b, i) => (i === 20 ? b ^ 1 : b)))],
      ['cut short', good.subarray(0, good.length - 40)],
      ['empty', Buffer.alloc(0)],
      ['another version', Buffer.from(good.map((b, i) => (i === 4 ? 2 : b)))],
      ['another Data.fs', encodeLiveScan('/elsewhere/Data.fs', entry)],
      ['another inode', encodeLiveScan(path.resolve(s.file), { ...entry, ino: entry.ino + 1 })],
      ['an end past the file', encodeLiveScan(path.resolve(s.file), { ...entry, end: entry.end + 4096, size: entry.end + 4096 })],
      ['an end inside a transaction', encodeLiveScan(path.resolve(s.file), { ...entry, end: entry.end - 9 })],
      ['another last tid', encodeLiveScan(path.resolve(s.file), { ...entry, lastTid: '0'.repeat(16) })],
      ['another last length', encodeLiveScan(path.resolve(s.file), { ...entry, lastTlen: (entry.lastTlen ?? 0) + 1 })],
      ['no refs at all', encodeLiveScan(path.resolve(s.file), { ...entry, end: 4, size: 4, lastTid: undefined, lastTlen: undefined, refs: [] }).subarray(0, 60)],
    ];
    for (const [what, bytes] of tries) {
      fs.writeFileSync(cacheFile, bytes);
      const r = await scanned(s);
      assert.equal(r.report.from, 'start', what);
      assert.deepEqual(summary(r.findings), want, what);
      assert.ok(fs.readFileSync(cacheFile).equals(good), `${what}: rewritten`);
    }
    // A header that claims more refs than the file holds, with a right checksum.
    const lying = Buffer.from(
      good
        .subarray(0, good.length - 32)
        .toString('latin1')
        .replace(/"count":(\d+)/, (_m, n: string) => `"count":${Number(n) + 1}`),
      'latin1',
    );
    assert.equal(decodeLiveScan(lying, path.resolve(s.file)), undefined);
    // A link in its place is not followed (and is replaced, not written through).
    const target = path.join(tmpDir(t), 'elsewhere');
    fs.writeFileSync(target, good);
    fs.rmSync(cacheFile);
    fs.symlinkSync(target, cacheFile);
    const r = await scanned(s);
    assert.equal(r.report.from, 'start');
    assert.ok(!fs.lstatSync(cacheFile).isSymbolicLink());
    assert.ok(fs.readFileSync(target).equals(good));
    // A FIFO in its place: refused without a read that would wait.
    fs.rmSync(cacheFile);
    const { spawnSync } = await import('node:child_process');
    assert.equal(spawnSync('mkfifo', [cacheFile]).status, 0);
    assert.equal((await scanned(s)).report.from, 'start');
  });

  it('never written where the caller says no, nor into a repository that is not there', async (t) => {
    const { site, s, cacheFile } = await setup(t);
    await site.site.close();
    const r = await scanned(s, { writeCache: () => false });
    assert.equal(r.report.persisted, false);
    assert.ok(!fs.existsSync(cacheFile));
    fs.rmSync(path.dirname(cacheFile), { recursive: true });
    const r2 = await scanned(s);
    assert.equal(r2.report.persisted, false);
    assert.ok(!fs.existsSync(path.dirname(cacheFile)), 'the backups folder is not created for it');
  });
});
