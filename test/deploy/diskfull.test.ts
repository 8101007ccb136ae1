/**
 * A full disk, simulated by replacing the engine's `fileLayer.open` with one
 * whose handles throw ENOSPC after a number of bytes, proves that every
 * deployment operation fails with a typed error (code IO, "The disk is
 * full") and changes nothing and leaves nothing behind: a backup failing in
 * its piece, in its .index or .dat after the blob generation was renamed
 * into place (`latest` goes back too), a zipbackup failing in its tar, and
 * restores failing in Data.fs or in the blob archive.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { backupDeployment, type Deployment, discoverDeployment, fileLayer, restoreDeployment } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { fakeClock } from '../support/fixtures';
import { content, md5File, snapshot, tempLeftovers, type TestHooks, tmpDir } from '../support/fs';
import { makeSite, type Site } from '../support/site';
import { nth } from '../support/must';

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
}

/** Runs `fn` with files matching `match` failing with ENOSPC once `budget` bytes were written to them. */
async function withFullDisk<T>(budget: number, match: (file: string) => boolean, fn: () => Promise<T>): Promise<{ result: Promise<T>; hits: number }> {
  const real = fileLayer.open;
  let left = budget;
  let hits = 0;
  fileLayer.open = async (p: string, flags: string | number, mode?: number): Promise<FileHandle> => {
    const fh = await real(p, flags, mode);
    if (!match(p)) return fh;
    return new Proxy(fh, {
      get(target, prop) {
        if (prop === 'write') {
          return async (buf: Buffer | string, off?: number, len?: number, pos?: number) => {
            const n = typeof buf === 'string' ? Buffer.byteLength(buf) : typeof len === 'number' ? len : buf.length - (off ?? 0);
            if (n > left) {
              hits++;
              throw enospc();
            }
            left -= n;
            return (target.write as (...a: unknown[]) => Promise<unknown>)(buf, off, len, pos);
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  };
  const result = fn();
  await result.catch(() => undefined);
  fileLayer.open = real;
  return { result, hits };
}

async function assertDiskFull(p: Promise<unknown>): Promise<void> {
  const e = await rejectsWith(p, 'IO');
  assert.match(e.message, /The disk is full/);
  assert.match(e.hint ?? '', /Free some disk space/);
}

async function setup(t: TestHooks, root: string, blobFormat: 'pool' | 'dir' = 'pool'): Promise<{ s: Site; dep: Deployment; clock: ReturnType<typeof fakeClock> }> {
  const s = await makeSite(t, root, { files: 3 });
  const dep = await discoverDeployment(root);
  dep.settings.blobFormat = blobFormat;
  const clock = fakeClock();
  await backupDeployment(dep, 'backup', { now: clock.now });
  await s.site.uploadFile('big.pdf', content('big', 60_000));
  await s.site.addDocument('more');
  return { s, dep, clock };
}

describe('a full disk', () => {
  it('a backup failing while it writes the piece changes nothing', async (t) => {
    const root = tmpDir(t);
    const { s, dep, clock } = await setup(t, root);
    for (const kind of ['backup', 'fullbackup', 'snapshot', 'zipbackup'] as const) {
      const before = snapshot(s.varDir);
      const { result, hits } = await withFullDisk(
        100,
        () => true,
        () => backupDeployment(dep, kind, { now: clock.now }),
      );
      await assertDiskFull(result);
      assert.ok(hits > 0, kind);
      assert.deepEqual(snapshot(s.varDir), before, `${kind}: nothing changed`);
      assert.deepEqual(tempLeftovers(s.varDir), [], `${kind}: nothing left behind`);
    }
    // With space again, the same backup succeeds.
    const r = nth(await backupDeployment(dep, 'backup', { now: clock.now }), 0);
    assert.equal(r.filestorage.action, 'incremental');
  });

  for (const format of ['pool', 'dir'] as const) {
    it(`a backup failing in its .index or .dat, after the generation was renamed into place, takes it back (${format})`, async (t) => {
      const root = tmpDir(t);
      const { s, dep, clock } = await setup(t, root, format);
      // The recipe's trees have a `latest` link, which goes back too; the pool has none.
      const latest = path.join(s.varDir, 'blobstoragebackups', 'latest');
      const latestBefore = format === 'dir' ? fs.readlinkSync(latest) : undefined;
      for (const [what, match] of [
        ['index', (p: string) => /\.index\./.test(path.basename(p))],
        ['dat', (p: string) => /\.dat\./.test(path.basename(p))],
      ] as const) {
        const before = snapshot(s.varDir);
        const { result, hits } = await withFullDisk(10, match, () => backupDeployment(dep, 'backup', { now: clock.now }));
        await assertDiskFull(result);
        assert.equal(hits, 1, what);
        assert.deepEqual(snapshot(s.varDir), before, `${what}: nothing changed (the pool files it added taken back too)`);
        if (latestBefore !== undefined) assert.equal(fs.readlinkSync(latest), latestBefore, `${what}: latest points where it did`);
        else assert.ok(!fs.existsSync(latest));
        assert.deepEqual(tempLeftovers(s.varDir), [], `${what}: nothing left behind`);
      }
    });
  }

  it('a zipbackup failing in its blob tar changes nothing', async (t) => {
    const root = tmpDir(t);
    const { s, dep, clock } = await setup(t, root);
    const before = snapshot(s.varDir);
    const { result, hits } = await withFullDisk(
      20_000,
      (p) => /\.tar\./.test(path.basename(p)),
      () => backupDeployment(dep, 'zipbackup', { now: clock.now }),
    );
    await assertDiskFull(result);
    assert.equal(hits, 1);
    assert.deepEqual(snapshot(s.varDir), before);
    assert.deepEqual(tempLeftovers(s.varDir), []);
  });

  it('a restore failing while it writes Data.fs or unpacks blobs changes nothing', async (t) => {
    const root = tmpDir(t);
    const { s, dep, clock } = await setup(t, root);
    await backupDeployment(dep, 'backup', { now: clock.now });
    await backupDeployment(dep, 'zipbackup', { now: clock.now });
    await s.site.uploadFile('after.pdf', content('after'));
    await s.site.close();
    const live = md5File(s.file);
    const before = snapshot(s.varDir);
    for (const [what, kind, budget] of [
      ['Data.fs', 'backup', 1000],
      ['blob archive', 'zip', 40_000],
    ] as const) {
      const { result, hits } = await withFullDisk(
        budget,
        () => true,
        () => restoreDeployment(dep, { kind, incremental: false }),
      );
      await assertDiskFull(result);
      assert.ok(hits > 0, what);
      assert.deepEqual(snapshot(s.varDir), before, `${what}: nothing changed`);
      assert.equal(md5File(s.file), live);
      assert.deepEqual(tempLeftovers(s.varDir), [], `${what}: nothing left behind`);
    }
  });
});
