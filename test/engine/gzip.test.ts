/**
 * gzip pieces compressed on every core (base/gzip.ts): members of GZIP_BLOCK
 * bytes, each saying its size, written and hashed in order. The real repozo
 * restores and verifies them byte for byte; its md5 in the .dat is ours; our
 * reader inflates them several at once and still reads repozo's own
 * single-member pieces; the level is chosen (1 to 9) from the CLI and the
 * config; a cancelled compression leaves nothing behind.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import {
  GZIP_BLOCK,
  HashingFileWriter,
  MEMBER_HEADER,
  backup,
  discoverDeployment,
  FileStorageWriter,
  memberSize,
  parseDat,
  readPiece,
  recover,
  verify,
} from '../../src/engine/internal';
import { parseRepozoArgs } from '../../src/cli/repozo';
import { parseDeployArgs } from '../../src/cli/deploy';
import { parseCompressLevel } from '../../src/cli/io';
import { rejectsWith, throwsWith } from '../support/assert';
import { at } from '../support/fixtures';
import { md5, md5File, names, tmpDir } from '../support/fs';
import { oracleSkip, runRepozo } from '../support/oracles';
import { Rng } from '../support/rng';
import { xorByte } from '../support/must';

/** Text-like bytes (compressible, not trivially): words drawn from a small vocabulary. */
function textBytes(n: number, seed = 1): Buffer {
  const r = new Rng(seed);
  const words = 'plone zope zodb portal catalog folder document news item event image workflow review state published private title'.split(' ');
  const parts: string[] = [];
  let len = 0;
  while (len < n) {
    const w = r.pick(words) + (r.int(10) === 0 ? String(r.int(100000)) : '') + ' ';
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join(''), 'latin1').subarray(0, n);
}

/** The members of a gzip file we wrote: their sizes, walked by their headers. */
function members(file: string): number[] {
  const b = fs.readFileSync(file);
  const sizes: number[] = [];
  let pos = 0;
  while (pos < b.length) {
    const n = memberSize(b.subarray(pos, pos + MEMBER_HEADER));
    assert.ok(n !== undefined, `no member of ours at ${pos}`);
    sizes.push(n);
    pos += n;
  }
  assert.equal(pos, b.length);
  return sizes;
}

/** A Data.fs of about `bytes` bytes of text-like records. */
async function makeData(file: string, bytes: number, seed = 7): Promise<void> {
  const w = await FileStorageWriter.create(file);
  try {
    const r = new Rng(seed);
    let oid = 0;
    while (w.end < bytes) {
      const records = Array.from({ length: 1 + r.int(4) }, () => ({ oid: oid++ % 500, data: textBytes(200 + r.int(20000), r.int(1 << 30)) }));
      await w.commit({ records });
    }
  } finally {
    await w.close();
  }
}

async function readAll(file: string, gzip: boolean): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of readPiece(file, gzip)) out.push(c);
  return Buffer.concat(out);
}

describe('gzip: the writer', () => {
  it('writes independent members of GZIP_BLOCK bytes, in order, any gzip reader reads them as one stream, md5 of the uncompressed bytes', async (t) => {
    const dir = tmpDir(t);
    const data = textBytes(3 * GZIP_BLOCK + 12345);
    const target = path.join(dir, 'x.fsz');
    const w = await HashingFileWriter.create(target, { gzip: true });
    // Chunks of odd sizes: blocks are cut at GZIP_BLOCK whatever the chunks are.
    for (let off = 0; off < data.length;) {
      const n = Math.min(data.length - off, 1 + ((off * 7919) % (3 * 1024 * 1024)));
      await w.write(data.subarray(off, off + n));
      off += n;
    }
    assert.equal(await w.finish(), md5(data));
    await w.commit();
    assert.equal(members(target).length, 4);
    assert.ok(zlib.gunzipSync(fs.readFileSync(target)).equals(data), 'zlib reads the members as one stream');
    assert.ok((await readAll(target, true)).equals(data), 'our reader, members in parallel');
    // Each member inflates on its own to one block.
    const b = fs.readFileSync(target);
    const first = members(target)[0]!;
    assert.equal(zlib.gunzipSync(b.subarray(0, first)).length, GZIP_BLOCK);
  });

  it('an empty stream is one empty member (a valid gzip file)', async (t) => {
    const target = path.join(tmpDir(t), 'e.fsz');
    const w = await HashingFileWriter.create(target, { gzip: true });
    await w.finish();
    await w.commit();
    assert.equal(members(target).length, 1);
    assert.equal(zlib.gunzipSync(fs.readFileSync(target)).length, 0);
    assert.equal((await readAll(target, true)).length, 0);
  });

  it('the level is used: 1 is bigger than 9; the same bytes come out', async (t) => {
    const dir = tmpDir(t);
    const data = textBytes(GZIP_BLOCK + 1000, 3);
    const sizes: number[] = [];
    for (const level of [1, 9]) {
      const target = path.join(dir, `l${level}.fsz`);
      const w = await HashingFileWriter.create(target, { gzip: true, level });
      await w.write(data);
      await w.finish();
      await w.commit();
      sizes.push(fs.statSync(target).size);
      assert.ok(zlib.gunzipSync(fs.readFileSync(target)).equals(data));
    }
    assert.ok(sizes[0]! > sizes[1]!, `level 1 (${sizes[0]}) should be bigger than level 9 (${sizes[1]})`);
  });

  it('a write failing (ENOSPC) mid-compression fails the piece; discard leaves nothing', async (t) => {
    const dir = tmpDir(t);
    const { fileLayer } = await import('../../src/engine/internal');
    const orig = fileLayer.open;
    t.after(() => (fileLayer.open = orig));
    fileLayer.open = async (p, flags, mode) => {
      const fh = await orig(p, flags, mode);
      let writes = 0;
      const write = fh.write.bind(fh) as (...a: unknown[]) => Promise<unknown>;
      (fh as unknown as { write: unknown }).write = (...a: unknown[]) => {
        if (++writes > 2) return Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' }));
        return write(...a);
      };
      return fh;
    };
    const w = await HashingFileWriter.create(path.join(dir, 'f.fsz'), { gzip: true });
    await assert.rejects(async () => {
      const data = textBytes(GZIP_BLOCK, 5);
      for (let i = 0; i < 8; i++) await w.write(data);
      await w.finish();
    }, /no space/);
    await w.discard();
    assert.deepEqual(names(dir), []);
  });
});

describe('gzip: the reader', () => {
  it('reads repozo-style single-member pieces, ours, and ours followed by another member (streamed from there)', async (t) => {
    const dir = tmpDir(t);
    const a = textBytes(2 * GZIP_BLOCK + 77, 11);
    const b = textBytes(1000, 12);
    const single = path.join(dir, 's.fsz');
    fs.writeFileSync(single, zlib.gzipSync(Buffer.concat([a, b]), { level: 9 }));
    assert.ok((await readAll(single, true)).equals(Buffer.concat([a, b])));
    const ours = path.join(dir, 'o.fsz');
    const w = await HashingFileWriter.create(ours, { gzip: true });
    await w.write(a);
    await w.finish();
    await w.commit();
    const mixed = path.join(dir, 'm.fsz');
    fs.writeFileSync(mixed, Buffer.concat([fs.readFileSync(ours), zlib.gzipSync(b)]));
    assert.ok((await readAll(mixed, true)).equals(Buffer.concat([a, b])));
  });

  it('a damaged member, a cut piece or a size inside a member is PIECE_BAD; a size past the end is only a hint, the piece is read as one stream', async (t) => {
    const dir = tmpDir(t);
    const ours = path.join(dir, 'o.fsz');
    const w = await HashingFileWriter.create(ours, { gzip: true });
    await w.write(textBytes(2 * GZIP_BLOCK + 5, 13));
    await w.finish();
    await w.commit();
    const good = fs.readFileSync(ours);
    const first = members(ours)[0]!;
    const flipped = Buffer.from(good);
    xorByte(flipped, first + 100, 0xff); // inside the second member's deflate data
    fs.writeFileSync(path.join(dir, 'flip.fsz'), flipped);
    await rejectsWith(readAll(path.join(dir, 'flip.fsz'), true), 'PIECE_BAD');
    fs.writeFileSync(path.join(dir, 'cut.fsz'), good.subarray(0, good.length - 10));
    await rejectsWith(readAll(path.join(dir, 'cut.fsz'), true), 'PIECE_BAD');
    const short = Buffer.from(good);
    short.writeUInt32LE(first - 1000, 16); // the first member claims to end inside itself
    fs.writeFileSync(path.join(dir, 'short.fsz'), short);
    await rejectsWith(readAll(path.join(dir, 'short.fsz'), true), 'PIECE_BAD');
    const long = Buffer.from(good);
    long.writeUInt32LE(good.length * 2, 16); // the first member claims more than the file
    fs.writeFileSync(path.join(dir, 'long.fsz'), long);
    assert.ok((await readAll(path.join(dir, 'long.fsz'), true)).equals(zlib.gunzipSync(good)));
  });
});

describe('gzip: backups', () => {
  it('a full and an incremental gzip backup: several members, restored and verified by us', async (t) => {
    const dir = tmpDir(t);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const data = path.join(dir, 'Data.fs');
    await makeData(data, 3 * GZIP_BLOCK);
    const full = await backup({ file: data, repository: repo, gzip: true, now: at('2026-03-01-10-00-00') });
    assert.equal(full.md5, md5File(data));
    assert.ok(members(path.join(repo, full.piece!)).length >= 3);
    const w = await FileStorageWriter.open(data);
    await w.commit({ records: [{ oid: 1, data: textBytes(GZIP_BLOCK + 10, 21) }] });
    await w.close();
    const inc = await backup({ file: data, repository: repo, gzip: true, compressLevel: 1, now: at('2026-03-01-10-00-01') });
    assert.equal(inc.action, 'incremental');
    assert.equal(members(path.join(repo, inc.piece!)).length, 2);
    assert.equal((await verify({ repository: repo })).ok, true);
    const out = path.join(dir, 'out.fs');
    await recover({ repository: repo, output: out, withVerify: true });
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(data)));
  });

  it('a backup cancelled mid-compression is ABORTED and leaves nothing', async (t) => {
    const dir = tmpDir(t);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const data = path.join(dir, 'Data.fs');
    await makeData(data, 6 * GZIP_BLOCK, 9);
    const ac = new AbortController();
    await rejectsWith(
      backup({
        file: data,
        repository: repo,
        gzip: true,
        compressLevel: 9,
        now: at('2026-03-01-10-00-00'),
        signal: ac.signal,
        onProgress: (p) => {
          if (p.done > 2 * GZIP_BLOCK) ac.abort();
        },
      }),
      'ABORTED',
    );
    assert.deepEqual(names(repo), []);
  });

  it('a compression level outside 1..9 is USAGE, before anything is written', async (t) => {
    const dir = tmpDir(t);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const data = path.join(dir, 'Data.fs');
    await makeData(data, 10000);
    for (const compressLevel of [0, 10, 2.5]) await rejectsWith(backup({ file: data, repository: repo, gzip: true, compressLevel }), 'USAGE');
    assert.deepEqual(names(repo), []);
  });

  it('the real repozo restores (-R) and verifies (-V) our pieces byte for byte; its md5 is ours; we read its pieces', { skip: oracleSkip() }, async (t) => {
    const dir = tmpDir(t);
    const data = path.join(dir, 'Data.fs');
    await makeData(data, 3 * GZIP_BLOCK, 17);
    const ours = path.join(dir, 'ours');
    const theirs = path.join(dir, 'theirs');
    const ours9 = path.join(dir, 'ours9');
    fs.mkdirSync(ours);
    fs.mkdirSync(ours9);
    fs.mkdirSync(theirs);
    const r = await backup({ file: data, repository: ours, gzip: true, now: at('2026-03-01-10-00-00') });
    const r9 = await backup({ file: data, repository: ours9, gzip: true, compressLevel: 9, now: at('2026-03-01-10-00-00') });
    await runRepozo(['-B', '-F', '-z', '-f', data, '-r', theirs]);
    const datOf = (repo: string) =>
      parseDat(
        fs.readFileSync(
          path.join(
            repo,
            names(repo).find((n) => n.endsWith('.dat'))!,
          ),
          'latin1',
        ),
      );
    const [a] = datOf(ours);
    const [b] = datOf(theirs);
    assert.deepEqual([a!.start, a!.end, a!.md5], [b!.start, b!.end, b!.md5], 'the same .dat line but for the path');
    assert.equal(r.md5, b!.md5);
    // Compressed size: at repozo's level, cutting into members costs well under 1 %
    // (the default level's size on realistic data is measured by the benchmark).
    const ourSize = fs.statSync(path.join(ours9, r9.piece!)).size;
    const theirSize = fs.statSync(
      path.join(
        theirs,
        names(theirs).find((n) => n.endsWith('.fsz'))!,
      ),
    ).size;
    assert.ok(ourSize <= 1.01 * theirSize, `${ourSize} > 1.01 × ${theirSize}`);

    const out = path.join(dir, 'by-repozo.fs');
    await runRepozo(['-R', '-r', ours, '-o', out]);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(data)), 'repozo -R gives Data.fs byte for byte');
    await runRepozo(['-V', '-r', ours]);
    await runRepozo(['-V', '-r', ours9]);

    // Our reader on repozo's own single-member piece.
    assert.equal((await verify({ repository: theirs })).ok, true);
    const out2 = path.join(dir, 'by-us.fs');
    await recover({ repository: theirs, output: out2, withVerify: true });
    assert.ok(fs.readFileSync(out2).equals(fs.readFileSync(data)));
  });
});

describe('gzip: the level from the CLI and the config', () => {
  it('--compress-level for repozo and the deployment commands', () => {
    assert.equal(parseRepozoArgs(['-B', '-z', '-f', 'x', '-r', 'y', '--compress-level=9']).compressLevel, 9);
    assert.equal(parseRepozoArgs(['-B', '-z', '-f', 'x', '-r', 'y', '--compress-level', '1']).compressLevel, 1);
    assert.equal(parseRepozoArgs(['-B', '-f', 'x', '-r', 'y']).compressLevel, undefined);
    assert.equal(parseRepozoArgs(['-R', '-r', 'y', '--compress-level=3']).compressLevel, undefined, 'ignored in recover mode');
    throwsWith(() => parseRepozoArgs(['-B', '-z', '-f', 'x', '-r', 'y', '--compress-level=0']), 'USAGE');
    for (const bad of ['0', '10', 'x', '', '6.5', '-1']) throwsWith(() => parseCompressLevel(bad), 'USAGE');
    assert.equal(parseDeployArgs(['backup', '--compress-level', '3']).values.get('compress-level'), '3');
  });

  it('compressLevel in plone-backup.json: default 6, a level, a bad value refused', async (t) => {
    const dir = tmpDir(t);
    fs.mkdirSync(path.join(dir, 'var', 'filestorage'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'var', 'filestorage', 'Data.fs'), 'FS21');
    fs.writeFileSync(path.join(dir, 'plone-backup.json'), '{}');
    assert.equal((await discoverDeployment(dir)).settings.compressLevel, 6);
    fs.writeFileSync(path.join(dir, 'plone-backup.json'), '{"compressLevel": 9}');
    const dep = await discoverDeployment(dir);
    assert.equal(dep.settings.compressLevel, 9);
    assert.deepEqual(dep.warnings, []);
    assert.equal((await discoverDeployment(dir, { compressLevel: 1 })).settings.compressLevel, 1, 'the command line wins');
    for (const bad of ['0', '10', '"6"', '6.5']) {
      fs.writeFileSync(path.join(dir, 'plone-backup.json'), `{"compressLevel": ${bad}}`);
      await rejectsWith(discoverDeployment(dir), 'USAGE');
    }
  });
});
