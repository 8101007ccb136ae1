/**
 * `plone-backup schedule install|show|remove`: the deployment's backups run
 * by systemd timers (system or --user units) where systemd runs, else by
 * crontab lines (the engine's deploy/schedule.ts writes, reads back and
 * removes exactly its own). What it schedules is this very plone-backup
 * (node and its script, or the standalone executable, by absolute paths)
 * with `-q`, in the deployment's folder, with the location flags given here.
 *
 * Exit 0 on success (also `show` with nothing scheduled, `remove` with
 * nothing to remove), 1 when systemctl or crontab fails, 2 on a usage error.
 */

import * as path from 'node:path';
import {
  PloneBackupError,
  SCHEDULE_ENV_VAR,
  TARGET_WORDS,
  chooseTarget,
  describeSpec,
  discoverDeployment,
  installSchedule,
  parseEvery,
  parseWeekday,
  removeSchedule,
  scheduleEnv,
  scheduleEnvOverrides,
  showSchedule,
  type InstalledSchedule,
  type ScheduleSpec,
  type ScheduleTarget,
} from '../engine';
import { type CliIo, selfInvocation } from './io';
import { deployOverrides, parseDeployArgs } from './deploy';

export const SCHEDULE_HELP = `Usage: plone-backup schedule install [--every 15m|1h|daily] [--full WEEKDAY] [--drill weekly]
                                    [--systemd | --user | --cron]
       plone-backup schedule show   [--systemd | --user | --cron] [--json]
       plone-backup schedule remove [--systemd | --user | --cron]

Runs the backups of the site in this folder (or --dir) from systemd or cron, as
this plone-backup with -q (only errors are printed, for cron's MAILTO):

  backup -q       every 15 minutes, hourly, or daily at 03:00 (--every; default daily)
  fullbackup -q   at 03:00 on WEEKDAY (--full sun, monday, 0-7), in place of that backup
  drill -q        weekly at 04:40 (--drill weekly), on the day before the full backup's
                  (or on Sundays), so that it restores the longest chain

Where systemd runs (/run/systemd/system), a timer and a service per job in
/etc/systemd/system (root), or with --user in ~/.config/systemd/user; elsewhere,
or with --cron, lines in your crontab (through crontab -l and crontab -), every
other line kept as it is. Ours are marked "# plone-backup-schedule:<id>", so show
and remove find exactly them. install replaces an earlier schedule of this site
(also one on another of these targets); times are the machine's local time.

Options:
  --every 15m|1h|daily   how often to back up (default daily)
  --full WEEKDAY         a weekly full backup on that day
  --drill weekly         a weekly restore drill
  --systemd, --user      system timers (root), or your own (systemctl --user)
  --cron                 crontab lines
  --json                 print what was done or found as JSON
  -q, --quiet            print only errors and warnings
  --dir, --config, --file, --blob-dir, --backup-dir, --part, --keep, --gzip/--no-gzip,
  --compress-level, --quick/--no-quick, --on-failure
                         as for backup; given here, they are part of the scheduled commands
`;

/** Our own options, taken out before the deployment's options are parsed as for every command. */
const OWN_VALUES = new Set(['every', 'full', 'drill']);
const OWN_FLAGS = new Set(['systemd', 'user', 'cron']);

function usage(msg: string): PloneBackupError {
  return new PloneBackupError('USAGE', msg, { hint: 'Run plone-backup schedule --help for the options.' });
}

function splitArgs(argv: string[]): { own: Map<string, string>; flags: Set<string>; rest: string[] } {
  const own = new Map<string, string>();
  const flags = new Set<string>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [name, glued] = a.startsWith('--') ? (a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined]) : ['', undefined];
    if (OWN_VALUES.has(name)) {
      const v = glued ?? argv[++i];
      if (v === undefined) throw usage(`--${name} needs a value`);
      own.set(name, v);
    } else if (OWN_FLAGS.has(name)) {
      if (glued !== undefined) throw usage(`--${name} takes no value`);
      flags.add(name);
    } else rest.push(a);
  }
  return { own, flags, rest };
}

function specOf(own: Map<string, string>): ScheduleSpec {
  const e = own.get('every') ?? 'daily';
  const every = parseEvery(e);
  if (!every) throw usage(`--every takes 15m, 1h or daily, not "${e}"`);
  const spec: ScheduleSpec = { every };
  const f = own.get('full');
  if (f !== undefined) {
    const day = parseWeekday(f);
    if (!day) throw usage(`--full takes a weekday (sun, mon, …, sunday, or 0-7), not "${f}"`);
    spec.full = day;
  }
  const d = own.get('drill');
  if (d !== undefined) {
    if (d.toLowerCase() !== 'weekly') throw usage(`--drill takes "weekly", not "${d}"`);
    spec.drill = true;
  }
  return spec;
}

/** A word as a person would type it (quoted when it holds spaces or quotes). */
function shown(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

function describeInstalled(s: InstalledSchedule): string[] {
  const lines = [`${s.spec ? describeSpec(s.spec) : 'a schedule whose marker is not one we write'} (${TARGET_WORDS[s.target]})`];
  for (const j of s.jobs) {
    lines.push(`  ${j.job.padEnd(10)} ${j.when.join('; ') || '(no times)'}${j.enabled === false ? ' (not enabled)' : ''}`);
    lines.push(`  ${''.padEnd(10)} runs ${j.command}`);
  }
  lines.push(`  ${s.files.join(', ')}`);
  for (const p of s.problems) lines.push(`  problem: ${p}`);
  return lines;
}

export async function scheduleMain(argv: string[], io: CliIo): Promise<number> {
  const { own, flags, rest } = splitArgs(argv);
  const p = parseDeployArgs(rest);
  if (p.flags.has('help') || p.positional[0] === 'help') {
    io.stdout.write(SCHEDULE_HELP);
    return 0;
  }
  const [action, ...extra] = p.positional;
  if (action === undefined) throw usage('schedule needs install, show or remove');
  if (extra.length) throw usage(`schedule ${action} takes no further arguments (${extra.join(' ')})`);
  if (action !== 'install' && own.size) throw usage(`--${[...own.keys()][0]} is for schedule install`);
  const json = p.flags.has('json');
  const quiet = p.flags.has('quiet');
  const out = (s: string) => {
    if (!quiet && !json) io.stdout.write(s + '\n');
  };
  // For tests only: where units and crontab lines go (see the engine's deploy/schedule.ts).
  const env = await scheduleEnv(scheduleEnvOverrides());
  const testNote = () => {
    if (process.env[SCHEDULE_ENV_VAR]) io.stderr.write(`note: ${SCHEDULE_ENV_VAR} is set: the schedule went where it says (it is for tests).\n`);
  };
  const asked = { systemd: flags.has('systemd'), user: flags.has('user'), cron: flags.has('cron') };
  const picked = flags.size ? [chooseTarget(asked, env)] : undefined;
  const dir = p.values.get('dir') ?? process.cwd();
  switch (action) {
    case 'install': {
      const spec = specOf(own);
      const target: ScheduleTarget = picked?.[0] ?? chooseTarget(asked, env);
      const overrides = deployOverrides(p);
      const dep = await discoverDeployment(dir, overrides);
      for (const w of dep.warnings) io.stderr.write(`warning: ${w}\n`);
      const res = await installSchedule(spec, { root: dep.root, invocation: selfInvocation(), overrides }, target, { env, signal: io.signal });
      if (json) io.stdout.write(JSON.stringify(res, null, 2) + '\n');
      out(`Scheduled ${res.plan.root} with a ${TARGET_WORDS[target]}: ${describeSpec(spec)}.`);
      for (const j of res.plan.jobs) {
        out(`  ${j.job.padEnd(10)} ${j.when.join('; ')}`);
        out(`  ${''.padEnd(10)} runs ${j.argv.map(shown).join(' ')}`);
      }
      out(`wrote ${res.written.join(', ')}${res.removed.length ? `; removed ${res.removed.join(', ')}` : ''}`);
      for (const n of res.notes) io.stderr.write(`note: ${n}\n`);
      testNote();
      return 0;
    }
    case 'show': {
      const root = path.resolve(dir);
      const found = await showSchedule(root, { env, targets: picked, signal: io.signal });
      if (json) io.stdout.write(JSON.stringify({ root, schedules: found }, null, 2) + '\n');
      if (!found.length) out(`Nothing is scheduled for ${root}${picked ? ` in the ${TARGET_WORDS[picked[0]!]}` : ''}.`);
      for (const s of found) for (const l of describeInstalled(s)) out(l);
      return 0;
    }
    case 'remove': {
      const root = path.resolve(dir);
      const removed = await removeSchedule(root, { env, targets: picked, signal: io.signal });
      if (json) io.stdout.write(JSON.stringify({ root, removed }, null, 2) + '\n');
      if (!removed.length) out(`Nothing was scheduled for ${root}${picked ? ` in the ${TARGET_WORDS[picked[0]!]}` : ''}; nothing was changed.`);
      for (const r of removed) out(`Removed the ${TARGET_WORDS[r.target]} schedule of ${root}: ${r.removed.join(', ')}`);
      testNote();
      return 0;
    }
    default:
      throw usage(`unknown schedule action "${action}": install, show or remove`);
  }
}
