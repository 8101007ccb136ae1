// The push index (src/engine/remote/pushindex.ts): its version 2 file, the version 1 file it still
// reads, what it refuses, and the dirty marker's order (a crash never leaves it clean too early).
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { emptyPushIndex, loadPushIndex, markPushIndexDirty, prunePushIndex, savePushIndex, type PushIndex } from '../../src/engine/remote/pushindex';
import { tmpDir } from '../support/fs';

const URL = 's3://bucket/site';
const pack = (c: string) => c.repeat(64);
const sha = (c: string) => c.repeat(64);

function sample(): PushIndex {
  const ix = emptyPushIndex(URL);
  ix.gens.push('2026-12-01-10-00-00', '2026-12-01-11-00-00');
  ix.objects['main/pieces/2026-12-01-10-00-00.fsz'] = [1000, sha('1')];
  for (let i = 0; i < 50; i++) ix.objects[`main/blobs/${String(i).padStart(16, '0')}/040d6b2b82161e4f.blob`] = [1200 + i, sha('2'), pack(i < 30 ? 'a' : 'b'), i * 1300];
  return ix;
}

describe('the push index', () => {
  it('writes version 2 (each pack named once) and reads it back as it was', async (t) => {
    const file = path.join(tmpDir(t), 'ix.json');
    const ix = sample();
    await savePushIndex(file, ix);
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as { version: number; packs: string[]; objects: Record<string, unknown[]> };
    assert.equal(raw.version, 2);
    assert.deepEqual(raw.packs, [pack('a'), pack('b')]);
    assert.deepEqual(raw.objects['main/blobs/0000000000000031/040d6b2b82161e4f.blob'], [1231, sha('2'), 1, 31 * 1300]);
    assert.equal(fs.readFileSync(file, 'utf8').split(pack('a')).length - 1, 1, 'a pack id is written once');
    assert.deepEqual(await loadPushIndex(file, URL), ix);
    assert.equal((fs.statSync(file).mode & 0o077) === 0, true, 'not readable by others');
  });

  it('reads a version 1 file (pack ids in every entry, dirty in a field)', async (t) => {
    const file = path.join(tmpDir(t), 'ix.json');
    const ix = sample();
    fs.writeFileSync(file, JSON.stringify({ version: 1, url: URL, dirty: true, gens: ix.gens, objects: ix.objects }));
    assert.deepEqual(await loadPushIndex(file, URL), { ...ix, dirty: true });
  });

  it("is empty when absent, garbled, another remote's, or naming a pack it does not list", async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'ix.json');
    assert.deepEqual(await loadPushIndex(file, URL), emptyPushIndex(URL));
    fs.writeFileSync(file, '{"version":2,');
    assert.deepEqual(await loadPushIndex(file, URL), emptyPushIndex(URL));
    await savePushIndex(file, sample());
    assert.deepEqual(await loadPushIndex(file, 's3://other/site'), emptyPushIndex('s3://other/site'));
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as { objects: Record<string, unknown[]> };
    raw.objects['main/blobs/0000000000000000/040d6b2b82161e4f.blob']![2] = 7;
    fs.writeFileSync(file, JSON.stringify(raw));
    assert.deepEqual(await loadPushIndex(file, URL), emptyPushIndex(URL));
    // A link in its place is not followed.
    fs.rmSync(file);
    fs.writeFileSync(path.join(dir, 'elsewhere.json'), JSON.stringify({ version: 2, url: URL, gens: ['x'], packs: [], objects: {} }));
    fs.symlinkSync(path.join(dir, 'elsewhere.json'), file);
    assert.deepEqual(await loadPushIndex(file, URL), emptyPushIndex(URL));
  });

  it('dirty is a marker beside it: made before the objects are sent, removed only after the clean index is written', async (t) => {
    const file = path.join(tmpDir(t), 'ix.json');
    const ix = sample();
    await savePushIndex(file, ix);
    assert.equal(fs.existsSync(`${file}.dirty`), false);
    const before = fs.readFileSync(file, 'utf8');
    await markPushIndexDirty(file);
    // Marking costs a tiny file; the index itself is not written again.
    assert.equal(fs.readFileSync(file, 'utf8'), before);
    assert.equal((await loadPushIndex(file, URL)).dirty, true);
    // Interrupted: a lost index with its marker still says dirty.
    fs.renameSync(file, `${file}.lost`);
    assert.deepEqual(await loadPushIndex(file, URL), emptyPushIndex(URL, true));
    fs.renameSync(`${file}.lost`, file);
    // Saved dirty: the marker stays; saved clean: it goes.
    await savePushIndex(file, { ...ix, dirty: true });
    assert.equal(fs.existsSync(`${file}.dirty`), true);
    await savePushIndex(file, ix);
    assert.equal(fs.existsSync(`${file}.dirty`), false);
    assert.equal((await loadPushIndex(file, URL)).dirty, false);
  });

  it('prune drops the forgotten generations and the objects no kept one names; an absent index stays absent', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'ix.json');
    await prunePushIndex(file, ['2026-12-01-10-00-00']);
    assert.equal(fs.existsSync(file), false);
    await savePushIndex(file, sample());
    const keep = 'main/blobs/0000000000000040/040d6b2b82161e4f.blob';
    await prunePushIndex(file, ['2026-12-01-10-00-00'], new Set([keep]));
    const after = await loadPushIndex(file, URL);
    assert.deepEqual(after.gens, ['2026-12-01-11-00-00']);
    assert.deepEqual(Object.keys(after.objects), [keep]);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).packs, [pack('b')]);
  });
});
