/**
 * `plone-backup schedule` (engine: deploy/schedule.ts; CLI: src/cli/schedule.ts):
 * the times, checked against the real systemd's calendar (systemd-analyze)
 * and against the crontab fields, minute by minute over a week; the unit
 * files written into a temporary root, checked by the real `systemd-analyze
 * verify` and enabled as the real `systemctl --root` sees them; the
 * systemctl calls against a running manager (a recording stand-in: no
 * systemd runs in CI); the real crontab command (Debian's cron) on a user of
 * the test's own (root: `crontab -u nobody`), whose other lines stay as they
 * were and whose crontab is left exactly as it was found; the cron line run
 * as cron runs it makes a real backup; and hostile input (hand-edited or
 * foreign lines and unit files, links, FIFOs, endless output) is refused or
 * passed over, never run.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  SCHEDULE_EVERY,
  SCHEDULE_MARK,
  WEEKDAYS,
  chooseTarget,
  cronProgram,
  editCrontab,
  execProgram,
  installSchedule,
  parseEvery,
  parseWeekday,
  planSchedule,
  removeSchedule,
  scheduleEnv,
  scheduleEnvOverrides,
  scheduleId,
  showSchedule,
  unitBase,
  type ScheduleEnv,
  type ScheduleSpec,
  type Weekday,
} from '../../src/engine/internal';
import { noHang, rejectsWith, throwsWith } from '../support/assert';
import { tmpDir, type TestHooks } from '../support/fs';
import { CLI } from '../support/paths';
import { runCli } from '../support/processes';
import { makeSite } from '../support/site';

const INVOCATION = [process.execPath, CLI];
/** A folder name with everything a unit file or a crontab line must escape. */
const WEIRD = `site 100% $HOME "q" 'a' #x`;

function run(argv: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}) {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', input: opts.input ?? '', env: { ...process.env, LC_ALL: 'C', ...opts.env }, timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A ScheduleEnv entirely inside `dir`, with no systemd running and no crontab command (unless given). */
async function tempEnv(dir: string, over: Partial<ScheduleEnv> = {}): Promise<ScheduleEnv> {
  return scheduleEnv({
    systemUnitDir: path.join(dir, 'etc', 'systemd', 'system'),
    userUnitDir: path.join(dir, 'home', '.config', 'systemd', 'user'),
    systemctl: [path.join(dir, 'no-systemctl')],
    crontab: [path.join(dir, 'no-crontab')],
    systemdRunning: false,
    userManagerRunning: false,
    lingerDir: path.join(dir, 'linger'),
    user: 'tester',
    ...over,
  });
}

/** A deployment folder (var/filestorage/Data.fs) without a real database, for what only needs its folder. */
function bareRoot(t: TestHooks, name = 'site'): string {
  const root = path.join(tmpDir(t), name);
  fs.mkdirSync(path.join(root, 'var', 'filestorage'), { recursive: true });
  fs.writeFileSync(path.join(root, 'var', 'filestorage', 'Data.fs'), 'FS21');
  return root;
}

// ---------------------------------------------------------------------------
// The minutes of a week (Sunday 00:00 = 0), three ways

const WEEK = 7 * 1440;
/** Sunday 2026-11-29 00:00 UTC starts the week looked at. */
const WEEK_START = Date.UTC(2026, 10, 29);

/** The minutes of the week at which systemd fires these calendar events (the real systemd-analyze, in UTC). */
function systemdMinutes(events: string[]): Set<number> {
  const r = run(['systemd-analyze', 'calendar', '--base-time=2026-11-28 23:59:59 UTC', '--iterations=800', ...events], { env: { TZ: 'UTC' } });
  assert.equal(r.status, 0, `systemd-analyze calendar ${events.join(' | ')}: ${r.stderr}`);
  const out = new Set<number>();
  for (const m of r.stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w{3} (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) UTC/g)) {
    const t = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
    const min = (t - WEEK_START) / 60_000;
    if (min >= 0 && min < WEEK) out.add(min);
  }
  return out;
}

/** The minutes of the week a crontab line's time fields (`m h * * dow`: lists and ranges, as we write them) match. */
function cronMinutes(fields: string[]): Set<number> {
  const field = (f: string, max: number) => {
    if (f === '*') return new Set(Array.from({ length: max }, (_, i) => i));
    const s = new Set<number>();
    for (const part of f.split(',')) {
      const [a, b] = part.split('-').map(Number);
      for (let i = a!; i <= (b ?? a!); i++) s.add(i);
    }
    return s;
  };
  const out = new Set<number>();
  for (const f of fields) {
    const [m, h, dom, mon, dow] = f.split(' ');
    assert.equal(dom, '*');
    assert.equal(mon, '*');
    for (const d of field(dow!, 7)) for (const hh of field(h!, 24)) for (const mm of field(m!, 60)) out.add(d * 1440 + hh * 60 + mm);
  }
  return out;
}

/** What the spec means, worked out here from its words, not from the engine's slots. */
function expectedMinutes(spec: ScheduleSpec): Record<'backup' | 'fullbackup' | 'drill', Set<number>> {
  const backup = new Set<number>();
  for (let m = 0; m < WEEK; m++) {
    const hh = Math.floor((m % 1440) / 60);
    const mm = m % 60;
    if (spec.every === '15m' ? mm % 15 === 0 : spec.every === '1h' ? mm === 0 : hh === 3 && mm === 0) backup.add(m);
  }
  const fullDay = spec.full === undefined ? undefined : WEEKDAYS.indexOf(spec.full);
  const full = new Set<number>(fullDay === undefined ? [] : [fullDay * 1440 + 180]);
  for (const m of full) backup.delete(m);
  const drillDay = fullDay === undefined ? 0 : (fullDay + 6) % 7;
  return { backup, fullbackup: full, drill: new Set(spec.drill ? [drillDay * 1440 + 4 * 60 + 40] : []) };
}

const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);

describe('schedule: when the jobs run', () => {
  const specs: ScheduleSpec[] = [];
  for (const every of SCHEDULE_EVERY)
    for (const full of [undefined, 'sun', 'wed'] as (Weekday | undefined)[])
      for (const drill of [false, true]) specs.push({ every, ...(full ? { full } : {}), ...(drill ? { drill } : {}) });

  for (const spec of specs) {
    it(`${JSON.stringify(spec)}: systemd's calendar, the crontab fields and the spec give the same minutes`, () => {
      const input = { root: '/srv/plone', invocation: INVOCATION };
      const sd = planSchedule(spec, input, 'systemd');
      const cr = planSchedule(spec, input, 'cron');
      const want = expectedMinutes(spec);
      const jobs = sd.jobs.map((j) => j.job);
      assert.deepEqual(jobs, ['backup', ...(spec.full ? ['fullbackup'] : []), ...(spec.drill ? ['drill'] : [])]);
      assert.deepEqual(
        cr.jobs.map((j) => j.job),
        jobs,
      );
      for (const j of sd.jobs) {
        const c = cr.jobs.find((x) => x.job === j.job)!;
        const bySystemd = systemdMinutes(j.when);
        assert.deepEqual(sorted(bySystemd), sorted(want[j.job]), `${j.job}: systemd fires at other minutes (${j.when.join(' | ')})`);
        assert.deepEqual(sorted(cronMinutes(c.when)), sorted(want[j.job]), `${j.job}: cron fires at other minutes (${c.when.join(' | ')})`);
      }
      // The full backup takes the place of that slot's backup; the drill meets no backup.
      const backups = want.backup;
      for (const m of [...want.fullbackup, ...want.drill]) assert.ok(!backups.has(m));
      assert.equal(backups.size + want.fullbackup.size, spec.every === '15m' ? 672 : spec.every === '1h' ? 168 : 7);
    });
  }

  it('reads --every and --full as a person types them, and refuses the rest', () => {
    assert.equal(parseEvery('15m'), '15m');
    assert.equal(parseEvery('Hourly'), '1h');
    assert.equal(parseEvery('daily'), 'daily');
    assert.equal(parseEvery('5m'), undefined);
    assert.equal(parseWeekday('Sunday'), 'sun');
    assert.equal(parseWeekday('wed'), 'wed');
    assert.equal(parseWeekday('7'), 'sun');
    assert.equal(parseWeekday('1'), 'mon');
    assert.equal(parseWeekday('someday'), undefined);
    assert.equal(parseWeekday('8'), undefined);
  });

  it('picks systemd where it runs, else cron, unless told; --cron with --systemd or --user is refused', async () => {
    const env = await scheduleEnv({ systemdRunning: true });
    assert.equal(chooseTarget({}, env), 'systemd');
    assert.equal(chooseTarget({}, { ...env, systemdRunning: false }), 'cron');
    assert.equal(chooseTarget({ cron: true }, env), 'cron');
    assert.equal(chooseTarget({ user: true }, env), 'systemd-user');
    assert.equal(chooseTarget({ systemd: true, user: true }, env), 'systemd-user');
    assert.equal(chooseTarget({ systemd: true }, { ...env, systemdRunning: false }), 'systemd');
    throwsWith(() => chooseTarget({ cron: true, user: true }, env), 'USAGE');
  });
});

describe('schedule: systemd units in a temporary root', () => {
  it('writes units the real systemd-analyze verifies (a program and a folder with every character to escape) and that the real systemctl sees enabled', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t, WEIRD);
    // node itself under a name that only survives ExecStart= when quoted and escaped right: verify checks that it exists
    // (a quote systemd refuses in a program's path: planSchedule says so, below).
    const binDir = path.join(dir, `bin $HOME %n #x`);
    fs.mkdirSync(binDir);
    const node = path.join(binDir, 'node');
    fs.symlinkSync(process.execPath, node);
    const env = await tempEnv(dir);
    const spec: ScheduleSpec = { every: '15m', full: 'sun', drill: true };
    const res = await installSchedule(spec, { root, invocation: [node, CLI] }, 'systemd', { env });
    const unitDir = env.systemUnitDir;
    const id = scheduleId(fs.realpathSync(root));
    const names = ['backup', 'fullbackup', 'drill'].flatMap((j) => [`${unitBase(id, j as 'backup')}.service`, `${unitBase(id, j as 'backup')}.timer`]);
    assert.deepEqual(res.written.map((f) => path.basename(f)).sort(), [...names].sort());
    assert.deepEqual(fs.readdirSync(unitDir).sort(), [...names, 'timers.target.wants'].sort(), 'nothing but our units (no temp file left)');
    for (const n of names) assert.equal(fs.statSync(path.join(unitDir, n)).mode & 0o777, 0o644 & ~process.umask());
    assert.ok(
      res.notes.some((n) => /not running here/.test(n)),
      res.notes.join('\n'),
    );

    const v = run(['systemd-analyze', 'verify', ...names.map((n) => path.join(unitDir, n))]);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stderr.trim(), '', `systemd-analyze verify said: ${v.stderr}`);
    for (const n of names.filter((x) => x.endsWith('.timer'))) {
      const e = run(['systemctl', `--root=${dir}`, 'is-enabled', n]);
      assert.equal(e.stdout.trim(), 'enabled', `${n}: ${e.stdout} ${e.stderr}`);
    }
    const service = fs.readFileSync(path.join(unitDir, `${unitBase(id, 'backup')}.service`), 'utf8');
    assert.match(service, /^Type=oneshot$/m);
    assert.ok(service.includes(`WorkingDirectory=${fs.realpathSync(root).replace(/%/g, '%%')}\n`));
    assert.match(service, /^ExecStart=".*" "backup" "-q" "--scheduled"$/m);

    const [shown, ...more] = await showSchedule(root, { env });
    assert.equal(more.length, 0);
    assert.equal(shown!.target, 'systemd');
    assert.deepEqual(shown!.spec, spec);
    assert.equal(shown!.edited, false);
    assert.deepEqual(shown!.problems, []);
    assert.deepEqual(
      shown!.jobs.map((j) => [j.job, j.program, j.enabled]),
      [
        ['backup', node, true],
        ['fullbackup', node, true],
        ['drill', node, true],
      ],
    );
  });

  it('installs twice as once, drops the jobs no longer asked for, and removes only its own', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const env = await tempEnv(dir);
    const unitDir = env.systemUnitDir;
    // Another deployment's schedule and a unit of someone else's: never touched.
    const other = bareRoot(t, 'other');
    await installSchedule({ every: 'daily' }, { root: other, invocation: INVOCATION }, 'systemd', { env });
    fs.writeFileSync(path.join(unitDir, 'foreign.timer'), '[Timer]\nOnCalendar=daily\n');
    const before = (n: string) => fs.readFileSync(path.join(unitDir, n), 'utf8');
    const otherFiles = fs.readdirSync(unitDir).filter((n) => n.startsWith('plone-backup-other-'));
    const otherText = otherFiles.map(before);

    await installSchedule({ every: '1h', full: 'sat', drill: true }, { root, invocation: INVOCATION }, 'systemd', { env });
    await installSchedule({ every: '1h', full: 'sat', drill: true }, { root, invocation: INVOCATION }, 'systemd', { env });
    const id = scheduleId(fs.realpathSync(root));
    const ours = () =>
      fs
        .readdirSync(unitDir)
        .filter((n) => n.includes(id))
        .sort();
    assert.equal(ours().length, 6);
    assert.equal(fs.readdirSync(path.join(unitDir, 'timers.target.wants')).filter((n) => n.includes(id)).length, 3);

    const res = await installSchedule({ every: '15m' }, { root, invocation: INVOCATION }, 'systemd', { env });
    assert.deepEqual(ours(), [`${unitBase(id, 'backup')}.service`, `${unitBase(id, 'backup')}.timer`]);
    assert.equal(res.removed.length, 4);
    assert.notEqual(run(['systemctl', `--root=${dir}`, 'is-enabled', `${unitBase(id, 'drill')}.timer`]).stdout.trim(), 'enabled');
    assert.match(fs.readFileSync(path.join(unitDir, `${unitBase(id, 'backup')}.timer`), 'utf8'), /^OnCalendar=\*-\*-\* \*:00,15,30,45:00$/m);

    const removed = await removeSchedule(root, { env });
    assert.equal(removed.length, 1);
    assert.equal(removed[0]!.target, 'systemd');
    assert.deepEqual(ours(), []);
    assert.deepEqual(
      fs.readdirSync(path.join(unitDir, 'timers.target.wants')).filter((n) => n.includes(id)),
      [],
    );
    assert.deepEqual(await showSchedule(root, { env }), []);
    assert.deepEqual(await removeSchedule(root, { env }), [], 'removing again finds nothing');
    assert.deepEqual(otherFiles.map(before), otherText);
    assert.equal(before('foreign.timer'), '[Timer]\nOnCalendar=daily\n');
  });

  it('user units: verified by systemd-analyze --user, and the note about lingering until it is on', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const env = await tempEnv(dir);
    const res = await installSchedule({ every: 'daily', drill: true }, { root, invocation: INVOCATION }, 'systemd-user', { env });
    assert.ok(res.written.every((f) => f.startsWith(env.userUnitDir + path.sep)));
    assert.ok(!fs.existsSync(env.systemUnitDir), 'no system unit');
    assert.ok(
      res.notes.some((n) => n.includes('loginctl enable-linger tester')),
      res.notes.join('\n'),
    );
    const runtime = path.join(dir, 'runtime');
    fs.mkdirSync(runtime, { mode: 0o700 });
    const v = run(['systemd-analyze', '--user', 'verify', ...res.written], { env: { XDG_RUNTIME_DIR: runtime } });
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stderr.trim(), '', v.stderr);
    const [s] = await showSchedule(root, { env });
    assert.equal(s!.target, 'systemd-user');
    assert.ok(s!.problems.some((p) => p.includes('enable-linger')));
    fs.mkdirSync(env.lingerDir);
    fs.writeFileSync(path.join(env.lingerDir, 'tester'), '');
    const [s2] = await showSchedule(root, { env });
    assert.deepEqual(s2!.problems, []);
  });

  it('with systemd running: daemon-reload, enable --now, restart on a change, disable --now before removing; a failing systemctl is SCHEDULE_FAILED', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const log = path.join(dir, 'systemctl.log');
    const fake = path.join(dir, 'systemctl');
    fs.writeFileSync(fake, `#!/bin/sh\necho "$*" >> '${log}'\nif [ -e '${dir}/fail' ]; then echo 'Access denied' >&2; exit 1; fi\n`, { mode: 0o755 });
    const env = await tempEnv(dir, { systemctl: [fake], systemdRunning: true, userManagerRunning: true });
    const calls = () => {
      const l = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : [];
      fs.rmSync(log, { force: true });
      return l;
    };
    const id = scheduleId(fs.realpathSync(root));
    const timer = (j: string) => `${unitBase(id, j as 'backup')}.timer`;

    await installSchedule({ every: '1h', drill: true }, { root, invocation: INVOCATION }, 'systemd', { env });
    assert.deepEqual(calls(), ['daemon-reload', `enable --now ${timer('backup')} ${timer('drill')}`]);
    assert.ok(!fs.existsSync(path.join(env.systemUnitDir, 'timers.target.wants')), 'systemctl enables, not us');
    await installSchedule({ every: '15m' }, { root, invocation: INVOCATION }, 'systemd', { env });
    assert.deepEqual(calls(), [`disable --now ${timer('drill')}`, 'daemon-reload', `enable --now ${timer('backup')}`, `restart ${timer('backup')}`]);
    await removeSchedule(root, { env, targets: ['systemd'] });
    assert.deepEqual(calls(), [`disable --now ${timer('backup')}`, 'daemon-reload']);

    await installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'systemd-user', { env });
    assert.deepEqual(calls(), ['--user daemon-reload', `--user enable --now ${timer('backup')}`]);

    fs.writeFileSync(path.join(dir, 'fail'), '');
    const e = await rejectsWith(installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'systemd', { env }), 'SCHEDULE_FAILED');
    assert.match(e.message, /daemon-reload failed \(exit 1\): Access denied/);
    assert.ok(e.hint);
  });

  it('refuses what is not its own at its names (a file, a link, a FIFO) and never writes through it', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const env = await tempEnv(dir);
    const id = scheduleId(fs.realpathSync(root));
    fs.mkdirSync(env.systemUnitDir, { recursive: true });
    const target = path.join(dir, 'elsewhere');
    fs.writeFileSync(target, 'precious\n');
    const at = (ext: string) => path.join(env.systemUnitDir, `${unitBase(id, 'backup')}.${ext}`);
    for (const make of [() => fs.writeFileSync(at('timer'), '[Timer]\nOnCalendar=daily\n'), () => fs.symlinkSync(target, at('service')), () => run(['mkfifo', at('service')])]) {
      make();
      await noHang('install over a foreign unit', () => rejectsWith(installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'systemd', { env }), 'WOULD_OVERWRITE'));
      assert.deepEqual(await showSchedule(root, { env }), [], 'not ours, not shown');
      assert.deepEqual(await removeSchedule(root, { env }), [], 'not ours, not removed');
      assert.equal(fs.readFileSync(target, 'utf8'), 'precious\n');
      for (const ext of ['timer', 'service']) fs.rmSync(at(ext), { force: true });
    }
  });

  it('a unit folder that cannot be made is a typed error; a folder name with a newline or a backslash is refused', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    fs.writeFileSync(path.join(dir, 'file'), '');
    const env = await tempEnv(dir, { systemUnitDir: path.join(dir, 'file', 'system') });
    await rejectsWith(installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'systemd', { env }), 'IO');
    for (const bad of ['a\nb', 'a\\b']) {
      throwsWith(() => planSchedule({ every: 'daily' }, { root: `/srv/${bad}`, invocation: INVOCATION }, 'cron'), 'USAGE');
      throwsWith(() => planSchedule({ every: 'daily' }, { root: '/srv/x', invocation: INVOCATION, overrides: { onFailure: `echo ${bad}` } }, 'systemd'), 'USAGE');
    }
    throwsWith(() => planSchedule({ every: 'daily' }, { root: '/srv/x', invocation: ['plone-backup'] }, 'cron'), 'USAGE');
    throwsWith(() => planSchedule({ every: 'daily' }, { root: '/srv/x', invocation: [`/opt/it's/node`, CLI] }, 'systemd'), 'USAGE');
    assert.equal(planSchedule({ every: 'daily' }, { root: '/srv/x', invocation: [`/opt/it's/node`, CLI] }, 'cron').jobs.length, 1);
  });
});

// ---------------------------------------------------------------------------
// The real crontab

/** crontab for a user of the test's own: root edits nobody's (root's own is never touched); anyone else their own. */
const CRONTAB = process.getuid?.() === 0 ? ['crontab', '-u', 'nobody'] : ['crontab'];

function crontabNow(): string | undefined {
  const r = run([...CRONTAB, '-l']);
  if (r.status === 0) return r.stdout;
  assert.match(r.stderr, /no crontab for/, `${CRONTAB.join(' ')} -l: ${r.stderr}`);
  return undefined;
}

function setCrontab(text: string | undefined): void {
  const r = text === undefined ? run([...CRONTAB, '-r']) : run([...CRONTAB, '-'], { input: text });
  assert.ok(r.status === 0 || (text === undefined && /no crontab/.test(r.stderr)), r.stderr);
}

describe('schedule: the crontab, through the real crontab command', () => {
  let original: string | undefined;
  before(() => {
    const which = run(['sh', '-c', 'command -v crontab']);
    assert.equal(which.status, 0, "crontab is not installed: install Debian's cron (.ci/run does)");
    original = crontabNow();
  });
  after(() => {
    setCrontab(original);
    assert.equal(crontabNow(), original, `${CRONTAB.join(' ')} is back as it was`);
  });

  it('keeps every other line as it was, replaces its own in place, and removes exactly its own', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const env = await tempEnv(dir, { crontab: CRONTAB });
    const otherId = scheduleId('/srv/another-site');
    const mine = [
      'MAILTO=ops@example.org',
      '# my own backup of /etc',
      '0 1 * * *  tar czf /var/backups/etc.tgz /etc',
      `${SCHEDULE_MARK}:${otherId} {"v":1,"root":"/srv/another-site","every":"daily"}`,
      `0 3 * * * cd '/srv/another-site' && exec '/usr/bin/plone-backup' 'backup' '-q' '--scheduled' ${SCHEDULE_MARK}:${otherId}:backup`,
      '',
      '30 2 * * 0  echo weekly   # a comment of mine',
      '',
    ].join('\n');
    setCrontab(mine);

    await installSchedule({ every: '1h', full: 'sun', drill: true }, { root, invocation: INVOCATION }, 'cron', { env });
    const once = crontabNow()!;
    assert.ok(once.startsWith(mine), `the user's lines come first, unchanged:\n${once}`);
    const ourLines = once.slice(mine.length).trimEnd().split('\n');
    assert.equal(ourLines.length, 2 + 2 + 1 + 1, ourLines.join('\n'));
    await installSchedule({ every: '1h', full: 'sun', drill: true }, { root, invocation: INVOCATION }, 'cron', { env });
    assert.equal(crontabNow(), once, 'installing twice is installing once');

    // Ours moved to the middle (a person sorted the crontab): replaced where it stands.
    const lines = once.trimEnd().split('\n');
    const moved = [...lines.slice(0, 2), ...ourLines, ...lines.slice(2, lines.length - ourLines.length)].join('\n') + '\n';
    setCrontab(moved);
    await installSchedule({ every: '15m' }, { root, invocation: INVOCATION }, 'cron', { env });
    const now = crontabNow()!.split('\n');
    assert.deepEqual(now.slice(0, 2), lines.slice(0, 2));
    assert.match(now[2]!, new RegExp(`^${SCHEDULE_MARK}:${scheduleId(fs.realpathSync(root))} \\{`));
    assert.match(now[4]!, /^0,15,30,45 \* \* \* \* cd '.*' && exec '.*' 'backup' '-q' '--scheduled' # plone-backup-schedule:[a-z0-9-]+:backup$/);
    assert.equal(now[5], lines[2]);

    const [s] = await showSchedule(root, { env });
    assert.equal(s!.target, 'cron');
    assert.deepEqual(s!.spec, { every: '15m' });
    assert.equal(s!.edited, false);
    assert.equal(s!.jobs[0]!.program, process.execPath);

    await removeSchedule(root, { env });
    assert.equal(crontabNow(), mine, "exactly the user's crontab again");
  });

  it('leaves no crontab where there was none', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const env = await tempEnv(dir, { crontab: CRONTAB });
    setCrontab(undefined);
    await installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'cron', { env });
    assert.ok(crontabNow()?.includes(scheduleId(fs.realpathSync(root))));
    const [removed] = await removeSchedule(root, { env, targets: ['cron'] });
    assert.equal(removed!.target, 'cron');
    assert.equal(crontabNow(), undefined);
  });

  it('moving the schedule from cron to systemd removes its crontab lines (and back)', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const env = await tempEnv(dir, { crontab: CRONTAB });
    setCrontab('MAILTO=root\n');
    await installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'cron', { env });
    const res = await installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'systemd', { env });
    assert.ok(
      res.notes.some((n) => /Removed the earlier schedule from the crontab/.test(n)),
      res.notes.join('\n'),
    );
    assert.equal(crontabNow(), 'MAILTO=root\n');
    const back = await installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'cron', { env });
    assert.ok(back.notes.some((n) => /from the systemd timer/.test(n)));
    assert.deepEqual(
      (await showSchedule(root, { env })).map((s) => s.target),
      ['cron'],
    );
    await removeSchedule(root, { env });
  });

  it('the line, run as cron runs it (% unescaped, then /bin/sh), backs up the site in a folder with every character to escape', async (t) => {
    const dir = tmpDir(t);
    const root = path.join(dir, WEIRD);
    await makeSite(t, root, { docs: 2, files: 1 });
    const env = await tempEnv(dir, { crontab: CRONTAB });
    setCrontab(undefined);
    await installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'cron', { env });
    const line = crontabNow()!
      .split('\n')
      .find((l) => l.endsWith(':backup'))!;
    await removeSchedule(root, { env });
    // cron: the sixth field on is the command; \% is a %, an unescaped % would end it.
    const command = line.split(' ').slice(5).join(' ');
    assert.ok(!/(^|[^\\])%/.test(command), 'every % escaped');
    const r = run(['/bin/sh', '-c', command.replace(/\\%/g, '%')], { env: { PATH: '/usr/bin:/bin', HOME: dir } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '', '-q: nothing printed on success');
    assert.ok(
      fs.readdirSync(path.join(root, 'var', 'backups')).some((n) => n.endsWith('.fsz')),
      'a backup was made',
    );
    // The run log says it was the schedule's run (what the status bar and Last runs show).
    const runs = fs
      .readFileSync(path.join(root, 'var', 'backups', '.plone-backup.runs.jsonl'), 'utf8')
      .trim()
      .split('\n');
    assert.equal((JSON.parse(runs.at(-1)!) as { via?: string }).via, 'schedule');
  });
});

// ---------------------------------------------------------------------------
// Hostile crontabs (a stand-in crontab command prints them)

describe('schedule: what is read back is never trusted', () => {
  function fakeCrontab(t: TestHooks, script: string): string[] {
    const dir = tmpDir(t);
    const f = path.join(dir, 'crontab');
    fs.writeFileSync(f, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return [f];
  }

  it('a hand-edited line of ours is shown as edited, removed by remove, and never run', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const id = scheduleId(fs.realpathSync(root));
    const pwned = path.join(dir, 'PWNED');
    const text = [
      `${SCHEDULE_MARK}:${id} {"v":1,"every":"bogus"`,
      `*/5 * * * * touch '${pwned}'; $(touch '${pwned}') ${SCHEDULE_MARK}:${id}:backup`,
      `${SCHEDULE_MARK}:${id}x {"v":1,"every":"daily"}`,
      `0 3 * * * echo not ours ${SCHEDULE_MARK}:${id}:other`,
      '',
    ].join('\n');
    const store = path.join(dir, 'tab');
    fs.writeFileSync(store, text);
    const crontab = fakeCrontab(t, `case "$1" in -l) cat '${store}';; -) cat > '${store}';; -r) rm '${store}';; esac`);
    const env = await tempEnv(dir, { crontab });
    const [s] = await showSchedule(root, { env });
    assert.equal(s!.spec, undefined);
    assert.equal(s!.edited, true);
    assert.equal(s!.jobs[0]!.program, undefined);
    assert.deepEqual(s!.jobs[0]!.when, ['*/5 * * * *']);
    await removeSchedule(root, { env });
    assert.equal(fs.readFileSync(store, 'utf8'), text.split('\n').slice(2).join('\n'));
    assert.ok(!fs.existsSync(pwned), 'nothing read was run');
  });

  it('a crontab command that prints without end is cut off (TOO_LARGE), a failing one is SCHEDULE_FAILED; nothing is written', async (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const endless = await tempEnv(dir, { crontab: fakeCrontab(t, `[ "$1" = -l ] && exec yes '# ${'x'.repeat(100)}'; touch '${dir}/written'`) });
    await noHang('show over an endless crontab', () => rejectsWith(showSchedule(root, { env: endless, targets: ['cron'] }), 'TOO_LARGE'));
    await rejectsWith(installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'cron', { env: endless }), 'TOO_LARGE');
    const failing = await tempEnv(dir, { crontab: fakeCrontab(t, `echo "crontab: you are not allowed to use this program" >&2; exit 1`) });
    const e = await rejectsWith(installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'cron', { env: failing }), 'SCHEDULE_FAILED');
    assert.match(e.message, /not allowed/);
    assert.ok(!fs.existsSync(path.join(dir, 'written')));
    const missing = await tempEnv(dir);
    const m = await rejectsWith(installSchedule({ every: 'daily' }, { root, invocation: INVOCATION }, 'cron', { env: missing }), 'SCHEDULE_FAILED');
    assert.match(m.userMessage, /not installed.*apt-get install cron/);
    assert.deepEqual(await showSchedule(root, { env: missing }), [], 'no crontab command: nothing there to show');
  });

  it('huge and long-lined crontabs are read in one pass', async (t) => {
    const root = bareRoot(t);
    const id = scheduleId(fs.realpathSync(root));
    const big =
      Array.from({ length: 10_000 }, (_, i) => `${i % 60} * * * * echo ${i} ${SCHEDULE_MARK}:${id}x:backup`).join('\n') +
      '\n' +
      `#${' '.repeat(200_000)}${SCHEDULE_MARK}:${id}:backup\n`;
    assert.ok(big.length < 1 << 20);
    const out = await noHang('edit a big crontab', () => editCrontab(big, id, ['# new']));
    assert.equal(out, big + '# new\n', 'other ids and over-long lines are not ours');
  });

  it('the marker parsers accept only what install writes', () => {
    assert.equal(execProgram('"/usr/bin/node" "x"'), '/usr/bin/node');
    assert.equal(execProgram('"/a b/$HOME%%n" "x"'), '/a b/$HOME%n');
    assert.equal(execProgram('/usr/bin/node x'), undefined);
    assert.equal(execProgram('"/unterminated'), undefined);
    assert.equal(cronProgram(`cd '/srv' && exec '/usr/bin/node' 'backup'`), '/usr/bin/node');
    assert.equal(cronProgram(`cd '/s'\\''x' && exec '/a 100\\%'\\''b' 'backup'`), `/a 100%'b`);
    assert.equal(cronProgram(`cd /srv && /usr/bin/node backup`), undefined);
  });

  it('PLONE_BACKUP_SCHEDULE_ENV: fields checked, anything else refused', () => {
    assert.deepEqual(scheduleEnvOverrides({}), {});
    assert.deepEqual(scheduleEnvOverrides({ PLONE_BACKUP_SCHEDULE_ENV: '{"crontab":["/x/crontab"],"systemdRunning":true}' }), { crontab: ['/x/crontab'], systemdRunning: true });
    for (const bad of ['[]', 'null', '{"crontab":"crontab"}', '{"systemdRunning":"yes"}', '{"systemUnitDir":""}', '{']) {
      throwsWith(() => scheduleEnvOverrides({ PLONE_BACKUP_SCHEDULE_ENV: bad }), 'USAGE');
    }
  });
});

// ---------------------------------------------------------------------------
// The CLI

describe('schedule: the CLI', () => {
  const saved = process.env.PLONE_BACKUP_SCHEDULE_ENV;
  after(() => {
    if (saved === undefined) delete process.env.PLONE_BACKUP_SCHEDULE_ENV;
    else process.env.PLONE_BACKUP_SCHEDULE_ENV = saved;
  });

  it('install, show and remove in a temporary root; usage errors exit 2, a failing systemctl 1', (t) => {
    const dir = tmpDir(t);
    const root = bareRoot(t);
    const unitDir = path.join(dir, 'system');
    const fail = path.join(dir, 'systemctl');
    fs.writeFileSync(fail, '#!/bin/sh\necho "Failed to connect to bus" >&2\nexit 1\n', { mode: 0o755 });
    process.env.PLONE_BACKUP_SCHEDULE_ENV = JSON.stringify({
      systemUnitDir: unitDir,
      userUnitDir: path.join(dir, 'user'),
      crontab: [path.join(dir, 'none')],
      systemctl: [fail],
      systemdRunning: false,
      userManagerRunning: false,
    });

    assert.equal(runCli(['schedule', '--help']).status, 0);
    assert.match(runCli(['help']).stdout, /schedule install\|show\|remove/);
    for (const bad of [
      ['schedule'],
      ['schedule', 'later'],
      ['schedule', 'install', '--every', '5m'],
      ['schedule', 'install', '--full', 'someday'],
      ['schedule', 'install', '--drill', 'daily'],
      ['schedule', 'install', '--cron', '--user'],
      ['schedule', 'show', '--every', '1h'],
    ]) {
      const r = runCli([...bad, '--dir', root]);
      assert.equal(r.status, 2, `${bad.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^plone-backup schedule: .+\n$/);
    }

    const inst = runCli(['schedule', 'install', '--every', '1h', '--full', 'Sunday', '--drill', 'weekly', '--systemd', '--keep', '3', '--dir', root]);
    assert.equal(inst.status, 0, inst.stderr);
    assert.match(inst.stdout, /^Scheduled .* with a systemd timer: hourly, a full backup on Sundays at 03:00, a restore drill on Saturdays at 04:40\.\n/);
    const id = scheduleId(fs.realpathSync(root));
    const service = fs.readFileSync(path.join(unitDir, `${unitBase(id, 'fullbackup')}.service`), 'utf8');
    // The CLI itself, resolved, and the flags given, in the deployment's folder.
    assert.ok(service.includes(`ExecStart="${process.execPath}" "${fs.realpathSync(CLI)}" "fullbackup" "-q" "--scheduled" "--keep" "3"\n`), service);
    assert.ok(service.includes(`WorkingDirectory=${fs.realpathSync(root)}\n`));

    const show = runCli(['schedule', 'show', '--json', '--dir', root]);
    assert.equal(show.status, 0, show.stderr);
    const found = JSON.parse(show.stdout) as { schedules: { target: string; spec: ScheduleSpec; edited: boolean }[] };
    assert.deepEqual(
      found.schedules.map((s) => [s.target, s.spec, s.edited]),
      [['systemd', { every: '1h', full: 'sun', drill: true }, false]],
    );
    assert.match(runCli(['schedule', 'show', '--dir', root]).stdout, /^hourly, a full backup on Sundays.*\(systemd timer\)\n/);

    const rm = runCli(['schedule', 'remove', '--dir', root]);
    assert.equal(rm.status, 0, rm.stderr);
    assert.match(rm.stdout, /^Removed the systemd timer schedule of /);
    assert.deepEqual(
      fs.readdirSync(unitDir).filter((n) => n.endsWith('.timer') || n.endsWith('.service')),
      [],
    );
    assert.match(runCli(['schedule', 'show', '--dir', root]).stdout, /^Nothing is scheduled for /);
    assert.match(runCli(['schedule', 'remove', '--dir', root]).stdout, /nothing was changed/);

    // With systemd running, a systemctl that fails: exit 1, one sentence with what to do.
    process.env.PLONE_BACKUP_SCHEDULE_ENV = JSON.stringify({ systemUnitDir: unitDir, crontab: [path.join(dir, 'none')], systemctl: [fail], systemdRunning: true });
    const f = runCli(['schedule', 'install', '--dir', root]);
    assert.equal(f.status, 1);
    assert.match(f.stderr, /^plone-backup schedule: .*daemon-reload failed \(exit 1\): Failed to connect to bus; .* Run it as root, or use --user or --cron\.\n$/);
    // No deployment in the folder: nothing is scheduled.
    const empty = tmpDir(t);
    assert.equal(runCli(['schedule', 'install', '--cron', '--dir', empty]).status, 1);
  });
});
