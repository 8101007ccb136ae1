/**
 * The repozo repository formats: file names, .dat lines, chains by date,
 * and stamps, against the repositories the real repozo wrote.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import {
  CACHE_FILE,
  allChains,
  datLinesFor,
  describeRepository,
  encodeDataHeader,
  encodeTxnHeader,
  findChain,
  formatDatLine,
  formatStamp,
  isStamp,
  listRepository,
  nextStamp,
  normalizeDateArg,
  parseDat,
  parseDataFileName,
  parseStamp,
  pieceFileName,
  pyJoin,
  readDat,
  readLayout,
} from '../../src/engine/internal';
import { rejectsWith, throwsWith } from '../support/assert';
import { history, statePath } from '../support/fixtures';
import { md5, tmpDir } from '../support/fs';
import { FIXTURE_REPO, FIXTURE_REPO_GZ } from '../support/paths';
import { nth } from '../support/must';

describe('repository: names', () => {
  it('parses data file names as repozo matches them', () => {
    assert.deepEqual(parseDataFileName('2026-01-01-10-00-00.fs'), { name: '2026-01-01-10-00-00.fs', stamp: '2026-01-01-10-00-00', ext: 'fs', full: true, gzip: false });
    assert.deepEqual(parseDataFileName('2026-01-01-10-00-00.deltafsz'), {
      name: '2026-01-01-10-00-00.deltafsz',
      stamp: '2026-01-01-10-00-00',
      ext: 'deltafsz',
      full: false,
      gzip: true,
    });
    assert.equal(parseDataFileName('2026-01-01-10-00-00.fsz')?.full, true);
    assert.equal(parseDataFileName('2026-01-01-10-00-00.deltafs')?.gzip, false);
    for (const n of [
      '2026-01-01-10-00-00.dat',
      '2026-01-01-10-00-00.index',
      '2026-01-01.fs',
      'x2026-01-01-10-00-00.fs',
      '2026-01-01-10-00-00.fs.tmp',
      '.plone-backup-2026-01-01-10-00-00.fs.1.a.tmp',
      'tmp.tmp',
    ]) {
      assert.equal(parseDataFileName(n), undefined, n);
    }
    assert.equal(pieceFileName('2026-01-01-10-00-00', true, false), '2026-01-01-10-00-00.fs');
    assert.equal(pieceFileName('2026-01-01-10-00-00', true, true), '2026-01-01-10-00-00.fsz');
    assert.equal(pieceFileName('2026-01-01-10-00-00', false, false), '2026-01-01-10-00-00.deltafs');
    assert.equal(pieceFileName('2026-01-01-10-00-00', false, true), '2026-01-01-10-00-00.deltafsz');
  });

  it('joins paths for .dat lines as Python does', () => {
    assert.equal(pyJoin('repository', 'a.fs'), 'repository/a.fs');
    assert.equal(pyJoin('repository/', 'a.fs'), 'repository/a.fs');
    assert.equal(pyJoin('/var/backups', 'a.fs'), '/var/backups/a.fs');
    assert.equal(pyJoin('', 'a.fs'), 'a.fs');
  });

  it('stamps are UTC, ordered as strings, and the next second is exact', () => {
    const d = parseStamp('2026-01-31-23-59-59');
    assert.equal(d.toISOString(), '2026-01-31T23:59:59.000Z');
    assert.equal(formatStamp(d), '2026-01-31-23-59-59');
    assert.equal(nextStamp('2026-01-31-23-59-59'), '2026-02-01-00-00-00');
    assert.equal(nextStamp('2026-12-31-23-59-59'), '2027-01-01-00-00-00');
    assert.ok(isStamp('2026-01-01-10-00-00'));
    assert.ok(!isStamp('2026-02-30-10-00-00'));
    assert.ok(!isStamp('2026-01-01-10-00'));
    throwsWith(() => parseStamp('yesterday'), 'DATE_BAD');
  });

  it('normalises -D values and rejects bad ones', () => {
    assert.equal(normalizeDateArg('2026-01-03'), '2026-01-03');
    assert.equal(normalizeDateArg('2026-01-03-10'), '2026-01-03-10');
    assert.equal(normalizeDateArg('2026-01-03-10-00-00'), '2026-01-03-10-00-00');
    assert.equal(normalizeDateArg('2026-01-03T10:00'), '2026-01-03-10-00');
    assert.equal(normalizeDateArg('2026-01-03 10:00:00'), '2026-01-03-10-00-00');
    for (const bad of ['2026-13-01', '2026-02-30', '2026-01-03-24', '2026-01-03-10-60', 'tomorrow', '', '26-01-03']) {
      throwsWith(() => normalizeDateArg(bad), 'DATE_BAD');
    }
  });
});

describe('repository: .dat files', () => {
  for (const [dir, ext] of [
    [FIXTURE_REPO, ''],
    [FIXTURE_REPO_GZ, 'z'],
  ] as const) {
    it(`parses and re-formats repozo's .dat files (${path.basename(dir)})`, async () => {
      for (const n of fs.readdirSync(dir).filter((n) => n.endsWith('.dat'))) {
        const text = fs.readFileSync(path.join(dir, n), 'latin1');
        const lines = parseDat(text, n);
        assert.ok(lines.length > 0);
        assert.equal(lines.map(formatDatLine).join(''), text);
        assert.deepEqual(await readDat(path.join(dir, n)), lines);
        lines.forEach((l, i) => {
          assert.ok(l.path.startsWith(`${path.basename(dir)}/`), l.path);
          assert.ok(l.path.endsWith(i === 0 ? `.fs${ext}` : `.deltafs${ext}`));
          if (i > 0) assert.equal(l.start, nth(lines, i - 1).end);
        });
      }
    });
  }

  it('the .dat md5s are those of the uncompressed state ranges', () => {
    const steps = history().steps;
    const lines = [
      ...parseDat(fs.readFileSync(path.join(FIXTURE_REPO, '2026-01-01-10-00-00.dat'), 'latin1')),
      ...parseDat(fs.readFileSync(path.join(FIXTURE_REPO, '2026-01-05-10-00-00.dat'), 'latin1')),
    ];
    assert.equal(lines.length, 6);
    lines.forEach((l, i) => {
      const state = fs.readFileSync(statePath(i + 1));
      assert.equal(l.end, nth(steps, i).size);
      assert.equal(md5(state.subarray(l.start, l.end)), l.md5);
    });
  });

  it('a missing .dat reads as undefined', async (t) => {
    assert.equal(await readDat(path.join(tmpDir(t), 'x.dat')), undefined);
  });

  const good = 'repository/2026-01-01-10-00-00.fs 0 2906 4d0dda6172f6c36161b10b06a005f910\n';
  const bad: [string, string][] = [
    ['three fields', 'repository/2026-01-01-10-00-00.fs 0 2906\n'],
    ['five fields', good.trim() + ' extra\n'],
    ['a non-number', 'repository/2026-01-01-10-00-00.fs zero 2906 4d0dda6172f6c36161b10b06a005f910\n'],
    ['END before START', 'repository/2026-01-01-10-00-00.fs 3000 2906 4d0dda6172f6c36161b10b06a005f910\n'],
    ['a short md5', 'repository/2026-01-01-10-00-00.fs 0 2906 4d0dda6172\n'],
    ['a non-hex md5', 'repository/2026-01-01-10-00-00.fs 0 2906 zz0dda6172f6c36161b10b06a005f910\n'],
    ['a path that is no piece', 'repository/Data.fs 0 2906 4d0dda6172f6c36161b10b06a005f910\n'],
    ['an empty line in the middle', good + '\n' + good],
    ['binary garbage', '\x00\x01\x02garbage\n'],
  ];
  for (const [name, text] of bad) {
    it(`DAT_BAD: ${name}`, () => {
      const e = throwsWith(() => parseDat(text, 'x.dat'), 'DAT_BAD');
      assert.equal(e.path, 'x.dat');
      assert.equal(typeof e.position, 'number');
    });
  }
  it('DAT_BAD names the line', () => {
    const e = throwsWith(() => parseDat(good + good.replace('2906 4d', '2906 zz'), 'x.dat'), 'DAT_BAD');
    assert.equal(e.position, 2);
    assert.match(e.message, /line 2/);
  });
});

describe('repository: chains', () => {
  it('lists a repository and finds the chain for each date as repozo does', async () => {
    const { files } = await listRepository(FIXTURE_REPO);
    assert.equal(files.length, 6);
    const chainNames = (when?: string) => findChain(files, when).map((f) => f.name);
    assert.deepEqual(chainNames(), ['2026-01-05-10-00-00.fs', '2026-01-06-10-00-00.deltafs']);
    assert.deepEqual(chainNames('2026-01-01-09-59-59'), []);
    assert.deepEqual(chainNames('2026-01-01-10-00-00'), ['2026-01-01-10-00-00.fs']);
    assert.deepEqual(chainNames('2026-01-03'), ['2026-01-01-10-00-00.fs', '2026-01-02-10-00-00.deltafs']);
    assert.deepEqual(chainNames('2026-01-04-10'), ['2026-01-01-10-00-00.fs', '2026-01-02-10-00-00.deltafs', '2026-01-03-10-00-00.deltafs']);
    assert.deepEqual(chainNames('2026-01-04-10-00-00'), ['2026-01-01-10-00-00.fs', '2026-01-02-10-00-00.deltafs', '2026-01-03-10-00-00.deltafs', '2026-01-04-10-00-00.deltafs']);
    assert.deepEqual(chainNames('2026-01-05-12'), ['2026-01-05-10-00-00.fs']);
    assert.deepEqual(
      allChains(files).map((c) => c.length),
      [4, 2],
    );
    const lines = parseDat(fs.readFileSync(path.join(FIXTURE_REPO, '2026-01-05-10-00-00.dat'), 'latin1'));
    assert.deepEqual(
      datLinesFor(findChain(files), lines).map((l) => l?.end),
      [4416, 5700],
    );
  });

  it('incrementals without a full before them make no chain', () => {
    const files = ['2026-01-02-10-00-00.deltafs', '2026-01-03-10-00-00.deltafs'].map((n) => parseDataFileName(n)!);
    assert.deepEqual(findChain(files), []);
  });

  it('a missing repository is REPO_MISSING', async (t) => {
    const e = await rejectsWith(listRepository(path.join(tmpDir(t), 'nope')), 'REPO_MISSING');
    assert.match(e.path ?? '', /nope$/);
  });
});

// ---------------------------------------------------------------------------
// Hostile repositories: what `list` (run by the extension on open) reads must
// cost memory and time in proportion to the real data, never to what a length
// field or a file name claims, and must never wait on a FIFO.

/** Makes a FIFO (named pipe) at `p`. */
function mkfifo(p: string): void {
  execFileSync('mkfifo', [p]);
}

/**
 * Runs `fn`, sampling the bytes held in Buffers meanwhile; returns its value
 * and the largest growth in MB over the lowest level seen before (garbage of
 * an earlier test may be collected meanwhile).
 */
async function peakBuffers<T>(fn: () => Promise<T>): Promise<{ value: T; peakMb: number }> {
  let low = process.memoryUsage().arrayBuffers;
  let peak = 0;
  const sample = () => {
    const now = process.memoryUsage().arrayBuffers;
    low = Math.min(low, now);
    peak = Math.max(peak, now - low);
  };
  const timer = setInterval(sample, 5);
  try {
    const value = await fn();
    sample();
    return { value, peakMb: peak / 2 ** 20 };
  } finally {
    clearInterval(timer);
  }
}

const TID = Buffer.from('03e5a1b2c3d4e5f6', 'hex');

/** A transaction header at `tpos` claiming `tlen`, with one record of a `plen`-byte pickle of zeros (its body not included). */
function txnHead(tpos: number, tlen: number, plen: number): Buffer {
  const h = encodeTxnHeader({ tid: TID, tlen, status: ' ', ulen: 4, dlen: 0, elen: 0 });
  const d = encodeDataHeader({ oid: Buffer.alloc(8, 1), tid: TID, prev: 0, tloc: tpos, vlen: 0, plen });
  return Buffer.concat([h, Buffer.from('anon'), d]);
}

/** Writes `parts` gzip-compressed to `file`, streaming (a part may be a count of zero bytes). */
async function writeGzip(file: string, parts: (Buffer | number)[]): Promise<void> {
  async function* gen() {
    for (const p of parts) {
      if (Buffer.isBuffer(p)) yield p;
      else for (let left = p; left > 0; left -= 1 << 20) yield Buffer.alloc(Math.min(left, 1 << 20));
    }
  }
  await pipeline(Readable.from(gen()), zlib.createGzip({ level: 9 }), fs.createWriteStream(file));
}

describe('repository: hostile pieces and metadata files', () => {
  const stamp = '2026-01-01-10-00-00';

  it('a .fsz whose header claims a huge transaction (registered in the .dat) is PIECE_BAD, with no allocation of that size', async (t) => {
    const repo = tmpDir(t);
    const claimed = 3 * 2 ** 30; // 3 GiB, in a piece of a few KB
    const head = Buffer.concat([Buffer.from('FS30'), txnHead(4, claimed, claimed - 23 - 4 - 42)]);
    await writeGzip(path.join(repo, `${stamp}.fsz`), [head, 1 << 20]);
    fs.writeFileSync(path.join(repo, `${stamp}.dat`), formatDatLine({ path: `${repo}/${stamp}.fsz`, start: 0, end: 4 + claimed + 8, md5: '0'.repeat(32) }));
    const { value: chains, peakMb } = await peakBuffers(() => describeRepository(repo));
    const piece = nth(nth(chains, 0).pieces, 0);
    assert.match(piece.problem ?? '', /ends at byte \d+, inside the transaction at byte 4/);
    assert.equal(piece.transactions, 0);
    assert.ok(peakMb < 64, `buffers grew by ${peakMb.toFixed(0)} MB`);
  });

  it('a gzip bomb (1000x) holding one real 100 MB transaction is described in bounded memory', async (t) => {
    const repo = tmpDir(t);
    const plen = 100 << 20;
    const tlen = 23 + 4 + 42 + plen;
    const trailer = Buffer.alloc(8);
    trailer.writeBigUInt64BE(BigInt(tlen));
    const file = path.join(repo, `${stamp}.fsz`);
    await writeGzip(file, [Buffer.concat([Buffer.from('FS30'), txnHead(4, tlen, plen)]), plen, trailer]);
    assert.ok(fs.statSync(file).size * 500 < plen, 'the piece is a bomb');
    const { value: chains, peakMb } = await peakBuffers(() => describeRepository(repo));
    const piece = nth(nth(chains, 0).pieces, 0);
    assert.equal(piece.problem, undefined);
    assert.equal(piece.transactions, 1);
    assert.equal(piece.end, 4 + tlen + 8);
    assert.equal(piece.lastTid, TID.toString('hex'));
    assert.equal(piece.lastUser, 'anon');
    assert.ok(peakMb < 64, `buffers grew by ${peakMb.toFixed(0)} MB for a 100 MB transaction`);
  });

  it('a piece that is a FIFO is a problem of that piece, never a hang', { timeout: 10_000 }, async (t) => {
    const repo = tmpDir(t);
    mkfifo(path.join(repo, `${stamp}.fsz`));
    const chains = await describeRepository(repo);
    assert.match(nth(nth(chains, 0).pieces, 0).problem ?? '', /not a regular file/);
  });

  for (const kind of ['FIFO', 'link to /dev/zero'] as const) {
    const make = (p: string) => (kind === 'FIFO' ? mkfifo(p) : fs.symlinkSync('/dev/zero', p));

    it(`a .dat that is a ${kind} is DAT_BAD at once`, { timeout: 10_000 }, async (t) => {
      const dir = tmpDir(t);
      const dat = path.join(dir, `${stamp}.dat`);
      make(dat);
      const e = await rejectsWith(readDat(dat), 'DAT_BAD');
      assert.match(e.message, /not a regular file/);
      assert.equal(e.path, dat);
    });

    it(`a blob dir's .layout that is a ${kind} is refused typed, at once`, { timeout: 10_000 }, async (t) => {
      const dir = tmpDir(t);
      make(path.join(dir, '.layout'));
      const e = await rejectsWith(readLayout(dir), 'TOO_LARGE');
      assert.match(e.message, /not a regular file/);
    });

    it(`a piece cache that is a ${kind} is ignored (rebuilt), never waited on or read whole`, { timeout: 10_000 }, async (t) => {
      const repo = tmpDir(t);
      fs.cpSync(FIXTURE_REPO_GZ, repo, { recursive: true });
      make(path.join(repo, CACHE_FILE));
      const chains = await describeRepository(repo);
      assert.ok(chains.length > 0);
      for (const c of chains) for (const p of c.pieces) assert.equal(p.problem, undefined, p.name);
    });
  }
});
