// How the parsers' cost grows with their input: each hostile-input parser
// (pickle, index, .dat, zope.conf, buildout.cfg) is timed on an input
// of size n and of size 2n, in this process, best of several rounds. A linear
// parser doubles (ratio ≈ 2); one that shifts or rescans per item quadruples.
// This replaces the timed assertions the tests once had: a loaded CI machine is
// no clock, while a ratio measured in one run on the same machine is honest.
//
//   node scripts/bench-linear.mjs            (part of npm run bench)
//
// Target: every ratio ≤ 3 (linear, with room for caches, GC and V8's dearer
// large arrays; quadratic gives 4 and more); a ratio
// above it is printed as missed, and the exit code stays 0: a benchmark
// reports, it does not gate.

import * as path from 'node:path';
import * as os from 'node:os';
import { promises as fsp } from 'node:fs';
import { ROOT, loadEngine, log, printReport } from './bench-lib.mjs';

const engine = await loadEngine(path.join(ROOT, 'out', 'bench', 'engine-linear.js'));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const TARGET = 3;

/** Best of ROUNDS wall times (ms) of `fn()`, each the mean of enough calls to last ≥ 20 ms, after one untimed run. */
function best(fn) {
  fn();
  let reps = 1;
  for (let t0 = performance.now(); performance.now() - t0 < 20; reps++) fn();
  let min = Infinity;
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    for (let k = 0; k < reps; k++) fn();
    min = Math.min(min, (performance.now() - t0) / reps);
  }
  return min;
}

const cat = (...b) => Buffer.concat(b);
const cases = [
  {
    name: 'pickle: one wide tuple (MARK, n items, TUPLE)',
    n: 32_000, // 2n stays under the loader's stack bound (65,536); below ~16k items V8's arrays are much cheaper per item, so smaller n would mislead
    make: (n) => cat(Buffer.from([0x80, 0x03, 0x28]), Buffer.alloc(2 * n, 0).fill(Buffer.from([0x4b, 0x07])), Buffer.from([0x74, 0x2e])),
    run: (b) => engine.loadPickle(b, 0, 'wide'),
  },
  {
    name: 'index: n objects, decoded',
    n: 200_000,
    make: (n) => {
      const idx = new engine.FsIndex();
      for (let i = 0; i < n; i++) {
        const oid = Buffer.alloc(8);
        oid.writeUInt32BE(i * 3, 4);
        idx.set(oid, 4 + i * 100);
      }
      return engine.encodeIndex(idx, 4 + n * 100);
    },
    run: (b) => engine.decodeIndex(b, 'bench.index'),
  },
  {
    name: '.dat: n lines',
    n: 20_000,
    make: (n) =>
      Array.from({ length: n }, (_, i) =>
        engine.formatDatLine({ path: `/b/2026-01-01-00-00-${String(i % 60).padStart(2, '0')}.deltafsz`, start: i * 10, end: i * 10 + 10, md5: 'a'.repeat(32) }),
      ).join(''),
    run: (text) => engine.parseDat(text, 'bench.dat'),
  },
  {
    name: 'zope.conf: n %define lines',
    n: 20_000,
    make: (n) => Array.from({ length: n }, (_, i) => `%define v${i} /srv/x${i}`).join('\n') + '\n<zodb_db main>\n<filestorage>\npath $v1/Data.fs\n</filestorage>\n</zodb_db>\n',
    run: (text) =>
      engine.parseZConfig(text, 'bench.conf', () => {
        throw new Error('no includes');
      }),
  },
  {
    name: 'buildout.cfg: an option of n continuation lines',
    n: 50_000,
    make: (n) => `[buildout]\nparts = backup\n[backup]\nrecipe = collective.recipe.backup\neggs =\n${Array.from({ length: n }, (_, i) => `    egg${i}`).join('\n')}\n`,
    run: (text) => engine.parseBuildoutText(text, 'bench.cfg'),
  },
];

const results = [];
for (const c of cases) {
  const small = c.make(c.n);
  const large = c.make(2 * c.n);
  // Interleaved, so that a slow moment of the machine hits both sizes alike.
  const tSmall = Math.min(
    best(() => c.run(small)),
    best(() => c.run(small)),
  );
  const tLarge = Math.min(
    best(() => c.run(large)),
    best(() => c.run(large)),
  );
  const ratio = tLarge / tSmall;
  log(`${c.name}: ${tSmall.toFixed(2)} ms at n=${c.n}, ${tLarge.toFixed(2)} ms at 2n: ×${ratio.toFixed(2)}`);
  results.push({ name: c.name, n: c.n, small: tSmall, large: tLarge, ratio, target: `≤ ${TARGET}`, met: ratio <= TARGET, trials: [] });
}

printReport({
  about: `Parsers, time at n and at 2n, best of ${ROUNDS}; node ${process.version}; ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}`,
  columns: [
    ['n', true, (r) => r.n.toLocaleString('en')],
    ['ms at n', true, (r) => r.small.toFixed(2)],
    ['ms at 2n', true, (r) => r.large.toFixed(2)],
    ['2n / n', true, (r) => r.ratio.toFixed(2)],
  ],
  results,
  notes: ['A linear parser doubles (≈ 2); a quadratic one quadruples (≈ 4).'],
});
await fsp.mkdir(path.join(ROOT, 'out', 'bench'), { recursive: true });
await fsp.writeFile(path.join(ROOT, 'out', 'bench', 'results-linear.json'), JSON.stringify({ date: new Date().toISOString(), node: process.version, results }, null, 2) + '\n');
