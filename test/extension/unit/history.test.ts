/**
 * The extension's pure parts of the run log and the Backup History (no VS Code
 * needed): runs.ts (what the status bar and the "Last runs" group say),
 * historyModel.ts (points, transactions, packs, gaps against a schedule or
 * the median interval, failed runs and drills) and historyChart.ts (the SVG
 * and the page: its CSP, escaping, one clickable point per generation).
 * The in-host half is test/extension/suite/history.test.ts.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appendRun, backupDeployment, discoverDeployment, formatStamp, runLogPath, type GenerationView, type RunRecord, type StorageView } from '../../../src/engine/internal';
import { tmpDir } from '../../support/fs';
import { makeSite } from '../../support/site';
import { expectedInterval, findGaps, historyData, historySection, median, pointCount, scheduleSeconds, storagePoints } from '../../../src/extension/historyModel';
import { csp, esc, historyPage, historySvg, ticks } from '../../../src/extension/historyChart';
import { lastRunSuffix, loadRuns, newestRuns, runLine, runSizes, summarizeRuns, type RunsInfo } from '../../../src/extension/runs';

const H = 3600_000;
const T0 = Date.parse('2026-03-01T00:00:00Z');
const stamp = (ms: number) => formatStamp(new Date(ms));

function gen(ms: number, o: Partial<GenerationView> & { end: number; transactions: number; full?: boolean }): GenerationView {
  const s = stamp(ms);
  return {
    name: `${s}.${o.full ? 'fsz' : 'deltafsz'}`,
    stamp: s,
    full: !!o.full,
    gzip: true,
    diskSize: 100,
    start: 0,
    registered: true,
    blobs: [],
    kind: 'backup',
    chain: s,
    blob: { status: 'match' },
    ...o,
  };
}

/** A storage view: chains of [ms, Data.fs end, transactions] (the first of each a full backup). */
function view(chains: [number, number, number][][], storage = 'main'): StorageView {
  return {
    storage,
    file: `/site/var/filestorage/${storage}.fs`,
    groups: [
      {
        kind: 'backup',
        repository: '/site/var/backups',
        unmatchedGenerations: [],
        chains: chains.map((c) => {
          const [full, ...incs] = c.map(([ms, end, transactions], i) => gen(ms, { end, transactions, full: i === 0 }));
          return { full: full!, incrementals: incs };
        }),
      },
      { kind: 'snapshot', repository: '/site/var/snapshotbackups', unmatchedGenerations: [], chains: [] },
    ],
  };
}

function run(command: RunRecord['command'], endMs: number, o: Partial<RunRecord> = {}): RunRecord {
  return {
    v: 1,
    command,
    outcome: 'ok',
    start: new Date(endMs - 2000).toISOString(),
    end: new Date(endMs).toISOString(),
    seconds: 2,
    host: 'web1',
    pid: 42,
    via: 'cli',
    storages: [{ name: 'main', stamp: stamp(endMs - 2000), action: 'incremental', bytes: 2048, transactions: 3 }],
    ...o,
  };
}

describe('history model', () => {
  it('points: Data.fs size, transactions summed along each chain, packs where Data.fs shrank', () => {
    const v = view([
      [
        [T0, 1000, 10],
        [T0 + H, 1500, 4],
        [T0 + 2 * H, 1800, 2],
      ],
      // packed: the next full backup is smaller
      [
        [T0 + 3 * H, 900, 7],
        [T0 + 4 * H, 1000, 1],
      ],
    ]);
    const pts = storagePoints(v, stamp(T0 + 4 * H));
    assert.deepEqual(
      pts.map((p) => [p.t - T0, p.full, p.size, p.transactions, p.pack, p.live]),
      [
        [0, true, 1000, 10, false, false],
        [H, false, 1500, 14, false, false],
        [2 * H, false, 1800, 16, false, false],
        [3 * H, true, 900, 7, true, false],
        [4 * H, false, 1000, 8, false, true],
      ],
    );
  });

  it('median and the expected interval: three times the median, or the schedule with slack, or none with one interval', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, 3]), 2.5);
    assert.equal(median([]), undefined);
    const hourly = [0, 1, 2, 3, 4].map((i) => T0 + i * H);
    assert.deepEqual(expectedInterval(hourly), { limit: 3 * 3600, from: 'median', interval: 3600 });
    assert.deepEqual(expectedInterval(hourly, 900), { limit: 1350, from: 'schedule', interval: 900 });
    assert.deepEqual(expectedInterval([T0, T0 + H]), { from: 'none' });
  });

  it('gaps: longer than the limit between backups, and the open one up to now', () => {
    const times = [T0, T0 + H, T0 + 2 * H, T0 + 7 * H, T0 + 8 * H];
    const gaps = findGaps('main', times, 3 * 3600, T0 + 8.5 * H);
    assert.deepEqual(gaps, [{ storage: 'main', from: T0 + 2 * H, to: T0 + 7 * H, seconds: 5 * 3600, open: false }]);
    const open = findGaps('main', times, 3 * 3600, T0 + 12 * H);
    assert.equal(open.length, 2);
    assert.deepEqual(open[1], { storage: 'main', from: T0 + 8 * H, to: T0 + 12 * H, seconds: 4 * 3600, open: true });
    // Exactly the limit is no gap; no limit, no gaps.
    assert.deepEqual(findGaps('main', [T0, T0 + 3 * H], 3 * 3600, T0 + 3 * H), []);
    assert.deepEqual(findGaps('main', times, undefined, T0 + 100 * H), []);
  });

  it('a section: gaps against the median of the main storage, failed runs and every drill from the run log', () => {
    const v = view([
      [
        [T0, 100, 1],
        [T0 + H, 200, 1],
        [T0 + 2 * H, 300, 1],
        [T0 + 3 * H, 400, 1],
        [T0 + 9 * H, 500, 1],
      ],
    ]);
    const runs = [
      run('backup', T0 + H),
      run('backup', T0 + 5 * H, { outcome: 'failed', storages: [], error: { code: 'BLOB_MISSING', message: 'a blob is missing' } }),
      run('drill', T0 + 6 * H, { storages: [{ name: 'main', stamp: stamp(T0 + 3 * H), ok: true }] }),
      run('verify', T0 + 7 * H),
    ];
    const sec = historySection({ root: '/site', name: 'site', views: [v], runs }, T0 + 9.5 * H);
    assert.equal(sec.expected.from, 'median');
    assert.equal(sec.expected.interval, 3600);
    assert.deepEqual(
      sec.storages[0]!.gaps.map((g) => [g.from - T0, g.to - T0, g.open]),
      [[3 * H, 9 * H, false]],
    );
    assert.deepEqual(
      sec.runs.map((r) => [r.command, r.outcome, r.t - T0, r.error ?? null]),
      [
        ['backup', 'failed', 5 * H, 'a blob is missing'],
        ['drill', 'ok', 6 * H, null],
      ],
    );
    // Against a half-hourly schedule (a gap: over 45 minutes), every interval of this hourly habit is one.
    const scheduled = historySection({ root: '/site', name: 'site', views: [v], runs, scheduleSeconds: 1800 }, T0 + 9.5 * H);
    assert.equal(scheduled.expected.from, 'schedule');
    assert.deepEqual(
      scheduled.storages[0]!.gaps.map((g) => [g.from - T0, g.to - T0, g.open]),
      [
        [0, H, false],
        [H, 2 * H, false],
        [2 * H, 3 * H, false],
        [3 * H, 9 * H, false],
      ],
    );
  });

  it('the time axis spans the oldest point or run to now', () => {
    const d = historyData(
      [{ root: '/site', name: 'site', views: [view([[[T0, 1, 1]]])], runs: [run('backup', T0 - H, { outcome: 'failed', error: { code: 'IO', message: 'x' } })] }],
      new Date(T0 + 10 * H),
    );
    assert.ok(d.from < T0 - H && d.from > T0 - 2 * H, `from ${d.from - T0}`);
    assert.equal(d.to, T0 + 10 * H);
    assert.equal(pointCount(d), 1);
    const empty = historyData([], new Date(T0));
    assert.ok(empty.from < empty.to);
  });
});

describe('history chart', () => {
  const d = () =>
    historyData(
      [
        {
          root: '/site',
          name: 'site',
          views: [
            view(
              [
                [
                  [T0, 1000, 10],
                  [T0 + H, 1200, 2],
                  [T0 + 2 * H, 1300, 1],
                  [T0 + 3 * H, 1400, 1],
                  [T0 + 12 * H, 1500, 1],
                ],
              ],
              'main <b>&',
            ),
          ],
          runs: [
            run('backup', T0 + 6 * H, { outcome: 'failed', storages: [], error: { code: 'IO', message: '<script>alert(1)</script> "disk" full' } }),
            run('drill', T0 + 7 * H, { outcome: 'failed', error: { code: 'DRILL_FAILED', message: 'blob missing' } }),
          ],
        },
      ],
      new Date(T0 + 13 * H),
    );

  it('one clickable point per generation, with what identifies it; gaps, failed runs and drills drawn', () => {
    const svg = historySvg(d());
    const points = [...svg.matchAll(/<g class="pt [^"]*" data-root="([^"]*)" data-storage="([^"]*)" data-kind="([^"]*)" data-stamp="([^"]*)"/g)];
    assert.equal(points.length, 5);
    assert.deepEqual(points[0]!.slice(1), ['/site', 'main &lt;b&gt;&amp;', 'backup', stamp(T0)]);
    assert.equal((svg.match(/class="pt backup full/g) ?? []).length, 1);
    assert.equal((svg.match(/<rect class="gap"/g) ?? []).length, 1, 'the 9 hours between the 4th and 5th backup');
    assert.equal((svg.match(/<g class="run failed"/g) ?? []).length, 1);
    assert.equal((svg.match(/<g class="run drill failed"/g) ?? []).length, 1);
    assert.match(svg, /<polyline class="line size" points="[\d., ]+"\/>/);
    assert.match(svg, /<polyline class="line tx" points="[\d., ]+"\/>/);
  });

  it('escapes every text from disk; carries no style attribute and no script', () => {
    const svg = historySvg(d());
    assert.ok(!svg.includes('<script>'), 'an error message is never markup');
    assert.ok(svg.includes('&lt;script&gt;alert(1)&lt;/script&gt; &quot;disk&quot; full'));
    assert.ok(!svg.includes('<b>'));
    assert.ok(!/\sstyle=/.test(svg), 'the CSP forbids inline styles');
    assert.ok(!/\son\w+=/.test(svg), 'no inline handlers');
    assert.equal(esc(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });

  it('the page: a strict CSP (nothing but the stylesheet and the nonce script), Restore only when offered', () => {
    const page = historyPage(d(), {
      cspSource: 'vscode-webview://abc',
      nonce: 'N0nce',
      scriptUri: 'vscode-webview://abc/media/history.js',
      styleUri: 'vscode-webview://abc/media/history.css',
      restore: true,
    });
    const policy = /<meta http-equiv="Content-Security-Policy" content="([^"]*)">/.exec(page)?.[1];
    assert.equal(policy, csp('vscode-webview://abc', 'N0nce'));
    assert.match(policy!, /^default-src 'none';/);
    assert.match(policy!, /script-src 'nonce-N0nce';/);
    assert.ok(!policy!.includes('unsafe'), policy);
    const scripts = [...page.matchAll(/<script([^>]*)>/g)].map((m) => m[1]);
    assert.deepEqual(scripts, [' nonce="N0nce" src="vscode-webview://abc/media/history.js"']);
    assert.ok(!/https?:\/\//.test(page.replace('http://www.w3.org/2000/svg', '')), 'nothing from the network');
    assert.match(page, /id="restore"/);
    const untrusted = historyPage(d(), { cspSource: 'x', nonce: 'n', scriptUri: 's', styleUri: 'c', restore: false });
    assert.doesNotMatch(untrusted, /id="restore"/);
  });

  it('ticks: on whole steps, inside the span, not too many', () => {
    const { at, step } = ticks(T0 + 10 * 60_000, T0 + 10 * H);
    assert.ok(at.length >= 3 && at.length <= 9, `${at.length} ticks`);
    for (const t of at) assert.ok(t >= T0 + 10 * 60_000 && t <= T0 + 10 * H);
    assert.ok(step >= H && step <= 3 * H);
    assert.ok(at.every((t, i) => i === 0 || t - at[i - 1]! === step));
  });
});

describe('runs as the status bar and the view say them', () => {
  const info = (records: RunRecord[], failing: RunsInfo['failing'] = []): RunsInfo => ({ file: '/site/var/backups/.plone-backup.runs.jsonl', records, failing, problems: [] });

  it('the newest run of every deployment; failing commands newest first', () => {
    const failed = run('backup', T0 + 3 * H, { outcome: 'failed', error: { code: 'BLOB_MISSING', message: 'gone' } });
    const verifyFailed = run('verify', T0 + 2 * H, { outcome: 'failed', error: { code: 'PIECE_MISMATCH', message: 'bad' } });
    const a = info(
      [run('backup', T0), verifyFailed, failed],
      [
        { command: 'backup', lastFailure: failed, failing: true },
        { command: 'verify', lastFailure: verifyFailed, failing: true },
      ],
    );
    const b = info([run('check', T0 + 4 * H)]);
    const sum = summarizeRuns([
      { name: 'a', runs: a },
      { name: 'b', runs: b },
      { name: 'c', runs: undefined },
    ]);
    assert.equal(sum.last?.name, 'b');
    assert.equal(sum.last?.value.command, 'check');
    assert.deepEqual(
      sum.failing.map((f) => f.value.command),
      ['backup', 'verify'],
    );
    assert.deepEqual(
      newestRuns(a, 2).map((r) => r.command),
      ['backup', 'verify'],
    );
  });

  it('the last run beside the age: nothing when it wrote the newest backup, else its outcome and age', () => {
    const now = new Date(T0 + 2 * H);
    const b = run('backup', T0 + H);
    assert.equal(lastRunSuffix(b, b.storages[0]!.stamp, now), '');
    assert.equal(lastRunSuffix(b, stamp(T0), now), 'backup ok 1h ago');
    assert.equal(lastRunSuffix(run('verify', T0 + H + 30 * 60_000), b.storages[0]!.stamp, now), 'verify ok 30m ago');
    assert.equal(lastRunSuffix(undefined, undefined, now), '');
  });

  it('one line: outcome, who, when, what it did', () => {
    const r = run('backup', T0, { via: 'extension', host: 'laptop' });
    assert.equal(runSizes(r), 'incremental, 3 transactions, 2.0 KB');
    assert.equal(runLine(r, new Date(T0 + 5 * 60_000)), 'backup ok · extension on laptop · 5m ago · incremental, 3 transactions, 2.0 KB');
    const two = run('drill', T0, {
      storages: [
        { name: 'main', bytes: 1024 },
        { name: 'catalog', errors: 1 },
      ],
    });
    assert.equal(runSizes(two), 'main: 1.0 KB; catalog: 1 error');
  });
});

describe("loadRuns: a deployment's run log as the extension reads it", () => {
  it('the records of the log and its rotated ones, oldest first; the failing commands as status decides; an unreadable log is a problem, never a throw', async (t) => {
    const root = tmpDir(t);
    const site = await makeSite(t, root);
    await site.site.close();
    const dep = await discoverDeployment(root);
    await backupDeployment(dep, 'backup');
    const log = runLogPath(dep);
    // An older run in the rotated log, then failures and a success in the current one, not in time order.
    fs.writeFileSync(`${log}.1`, JSON.stringify(run('backup', T0)) + '\n');
    await appendRun(dep, run('verify', T0 + 3 * H, { outcome: 'failed', storages: [], error: { code: 'PIECE_MISMATCH', message: 'bad' } }));
    await appendRun(dep, run('backup', T0 + 2 * H, { outcome: 'failed', storages: [], error: { code: 'IO', message: 'disk full' } }));
    await appendRun(dep, run('backup', T0 + 4 * H));
    fs.appendFileSync(log, 'not a record\n');
    const info = await loadRuns(dep, new Date(T0 + 5 * H));
    assert.equal(info.file, log);
    assert.deepEqual(
      info.records.map((r) => [r.command, r.outcome, Date.parse(r.end) - T0]),
      [
        ['backup', 'ok', 0],
        ['backup', 'failed', 2 * H],
        ['verify', 'failed', 3 * H],
        ['backup', 'ok', 4 * H],
      ],
    );
    // The backup's failure was followed by a success; the verify's was not.
    assert.deepEqual(
      info.failing.map((c) => [c.command, c.lastFailure?.error?.message]),
      [['verify', 'bad']],
    );
    assert.deepEqual(info.problems, []);

    // A link where the log should be: read as nothing, said as a problem.
    fs.renameSync(log, path.join(root, 'elsewhere.jsonl'));
    fs.symlinkSync(path.join(root, 'elsewhere.jsonl'), log);
    const linked = await loadRuns(dep, new Date(T0 + 5 * H));
    assert.deepEqual(
      linked.records.map((r) => r.command),
      ['backup'],
      'only the rotated log',
    );
    assert.equal(linked.problems.length > 0, true, 'the link is a problem');
  });
});

describe('history: gaps against the installed schedule', () => {
  it('takes the interval of the first schedule we wrote; none (or one edited beyond reading) gives none', () => {
    const sched = (every: '15m' | '1h' | 'daily' | undefined) => ({
      target: 'cron' as const,
      id: 'x',
      spec: every ? { every } : undefined,
      jobs: [],
      files: [],
      edited: false,
      problems: [],
    });
    assert.equal(scheduleSeconds([sched('15m')]), 900);
    assert.equal(scheduleSeconds([sched(undefined), sched('daily')]), 86_400);
    assert.equal(scheduleSeconds([sched(undefined)]), undefined);
    assert.equal(scheduleSeconds(undefined), undefined);
    // An hourly schedule: a 2-hour hole is a gap, though the backups before it came every 15 minutes.
    assert.equal(
      expectedInterval(
        [0, 900, 1800].map((s) => s * 1000),
        scheduleSeconds([sched('1h')]),
      ).from,
      'schedule',
    );
  });
});
