/**
 * One clock for people: stamps read in local time with the zone's name when
 * it is not UTC, and dates typed in local time (or UTC with a Z / UTC suffix)
 * turned into the repozo date of that moment. Run in child processes with TZ
 * set, as a user in Berlin, New York or UTC would.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ENGINE } from '../support/paths';

/** Evaluates `expr` (with `e` the engine) in a process whose local time zone is `tz`; returns its JSON result. */
function inZone(tz: string, expr: string): unknown {
  const code = `const e = require(${JSON.stringify(ENGINE)}); let r; try { r = ${expr}; } catch (x) { r = { error: x.code, message: x.message }; } process.stdout.write(JSON.stringify(r));`;
  const p = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, TZ: tz }, encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  return JSON.parse(p.stdout);
}

describe('local time', () => {
  it('a stamp reads in local time with its zone, in winter and in summer; in UTC without one', () => {
    assert.equal(inZone('Europe/Berlin', `e.localTime('2026-12-01-06-20-20')`), '2026-12-01 07:20:20 CET');
    assert.equal(inZone('Europe/Berlin', `e.localTime('2026-07-01-06-20-20')`), '2026-07-01 08:20:20 CEST');
    assert.equal(inZone('Europe/Berlin', `e.localTime('2026-12-01-06-20-20', { time: true })`), '07:20:20 CET');
    assert.equal(inZone('America/New_York', `e.localTime('2026-12-01-06-20-20')`), '2026-12-01 01:20:20 EST');
    assert.equal(inZone('Asia/Kolkata', `e.localTime('2026-12-01-06-20-20')`), '2026-12-01 11:50:20 GMT+5:30');
    assert.equal(inZone('UTC', `e.localTime('2026-12-01-06-20-20')`), '2026-12-01 06:20:20');
  });

  it('a typed date is local time; Z or UTC makes it UTC; the result is the repozo date of that moment', () => {
    const berlin = (s: string) => inZone('Europe/Berlin', `e.localDateArg(${JSON.stringify(s)})`);
    // As read in the tree: 07:21 in Berlin is 06:21 UTC, so the 06:20:20 UTC (07:20:20 CET) backup is the one before it.
    assert.equal(berlin('2026-12-01 07:21'), '2026-12-01-06-21-00');
    assert.equal(berlin('2026-12-01T07:21:30'), '2026-12-01-06-21-30');
    assert.equal(berlin('2026-12-01-07-21'), '2026-12-01-06-21-00');
    assert.equal(berlin('2026-12-01'), '2026-11-30-23-00-00');
    assert.equal(berlin('2026-07-01 07:21'), '2026-07-01-05-21-00');
    assert.equal(berlin('2026-12-01 07:21Z'), '2026-12-01-07-21-00');
    assert.equal(berlin('2026-12-01 07:21 UTC'), '2026-12-01-07-21-00');
    assert.equal(inZone('UTC', `e.localDateArg('2026-12-01 07:21')`), '2026-12-01-07-21-00');
    for (const bad of ['yesterday', '2026-13-01', '2026-02-30 10:00', '2026-12-01 24:00', '']) {
      const r = berlin(bad) as { error?: string; message?: string };
      assert.equal(r.error, 'DATE_BAD', bad);
      assert.match(r.message!, /is not a (valid )?date/, bad);
    }
    // The hour skipped when clocks go forward does not exist here.
    assert.match((berlin('2026-03-29 02:30') as { message: string }).message, /clocks were put forward/);
  });
});
