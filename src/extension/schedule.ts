/**
 * "Plone Backup: Schedule Backups…": the CLI's `plone-backup schedule`
 * (install, show, remove) through quick picks, done by the engine
 * (deploy/schedule.ts) exactly as the CLI does it. The command scheduled is
 * the `plone-backup` found on PATH (the .vsix carries no CLI), run with -q in
 * the deployment's folder with the paths and settings the view uses.
 *
 * Installing and removing change the machine (a crontab, systemd units) and
 * schedule runs that write the backups and run the configuration's commands
 * later, unattended: refused in an untrusted workspace, then the consent for
 * outside paths and commands (safety.ts), then a modal confirmation naming
 * what is written and what will run. Pickers and the confirmation may be
 * answered by arguments (ScheduleArgs; `yes` only under the test hooks) or
 * by the hooks' `pick` / `confirm`.
 *
 * Targets: the engine's real ones (/etc/systemd/system, ~/.config/systemd/user,
 * crontab). Only under the test hooks (PLONE_BACKUP_TEST_HOOKS=1, the in-host
 * suite) does PLONE_BACKUP_SCHEDULE_ENV (JSON of the engine's ScheduleEnv) point
 * them into a temporary folder, so the tests never touch the machine's crontab
 * or systemd.
 */

import * as os from 'node:os';
import * as vscode from 'vscode';
import {
  PloneBackupError,
  SCHEDULE_EVERY,
  TARGET_WORDS,
  WEEKDAYS,
  describeSpec,
  findCli,
  installSchedule,
  removeSchedule,
  scheduleEnv,
  scheduleEnvOverrides,
  scheduleLabel,
  showSchedule,
  type InstalledSchedule,
  type ScheduleChange,
  type ScheduleEnv,
  type ScheduleEvery,
  type ScheduleSpec,
  type ScheduleTarget,
  type Weekday,
} from '../engine';
import type { Outcome, ScheduleArgs } from './commands';
import type { Entry, Model } from './model';
import { confirm, type TestHooks } from './safety';
import type { Ui } from './ui';

/** The engine's targets: the real ones, or (test hooks only) where PLONE_BACKUP_SCHEDULE_ENV says. */
export function extensionScheduleEnv(hooks: TestHooks | undefined): Promise<ScheduleEnv> {
  return scheduleEnv(hooks ? scheduleEnvOverrides() : {});
}

/** "scheduled every 15 min (systemd timer)", for the view; undefined when nothing is. */
export function scheduleDescription(entry: Entry): string | undefined {
  const s = entry.schedules ?? [];
  if (!s.length) return undefined;
  return `scheduled ${s.map(scheduleLabel).join(', ')}${s.some((x) => x.problems.length) ? ' ⚠' : ''}`;
}

const EVERY_PICKS: Record<ScheduleEvery, string> = { '15m': 'Every 15 minutes', '1h': 'Every hour', daily: 'Daily at 03:00' };
const DAY_LABELS: Record<Weekday, string> = { sun: 'Sunday', mon: 'Monday', tue: 'Tuesday', wed: 'Wednesday', thu: 'Thursday', fri: 'Friday', sat: 'Saturday' };

interface Item<T> extends vscode.QuickPickItem {
  value: T;
}

/** What the command needs of Actions (its private helpers, passed in). */
export interface ScheduleDeps {
  model: Model;
  ui: Ui;
  hooks: TestHooks | undefined;
  entryFor: (arg: unknown, title: string) => Promise<Entry | Outcome<never>>;
  mayWrite: (entry: Entry, title: string) => Promise<Outcome<never> | undefined>;
}

const declined: Outcome<never> = { status: 'declined' };

/** A quick pick (or the test hooks' answer); undefined when dismissed. */
async function pick<T>(hooks: TestHooks | undefined, title: string, placeHolder: string, items: Item<T>[]): Promise<T | undefined> {
  if (hooks?.pick) {
    const label = await hooks.pick({ title, items: items.map((i) => i.label) });
    return items.find((i) => i.label === label)?.value;
  }
  return (await vscode.window.showQuickPick(items, { title, placeHolder }))?.value;
}

function describeInstalled(s: InstalledSchedule): string[] {
  return [
    `${s.spec ? describeSpec(s.spec) : 'a schedule not as plone-backup writes it'} (${TARGET_WORDS[s.target]})`,
    ...s.jobs.map((j) => `  ${j.job}: ${j.when.join('; ')} — ${j.command}`),
    `  ${s.files.join(', ')}`,
    ...s.problems.map((p) => `  problem: ${p}`),
  ];
}

export async function scheduleCommand(d: ScheduleDeps, arg: unknown): Promise<Outcome<InstalledSchedule[] | ScheduleChange | ScheduleChange[]>> {
  const args: ScheduleArgs = arg && typeof arg === 'object' && !('type' in arg) ? (arg as ScheduleArgs) : {};
  const entry = await d.entryFor(arg, 'Schedule Backups');
  if ('status' in entry) return entry;
  const title = `Schedule Backups of ${entry.name}`;
  try {
    const env = await extensionScheduleEnv(d.hooks);
    const current = await showSchedule(entry.root, { env });
    let action = args.action;
    if (!action) {
      action = current.length
        ? await pick(d.hooks, title, `${scheduleDescription({ ...entry, schedules: current })}`, [
            { label: 'Change the schedule…', value: 'install' as const },
            { label: 'Show the schedule', value: 'show' as const },
            { label: 'Remove the schedule', value: 'remove' as const },
          ])
        : 'install';
      if (!action) return declined;
    }
    if (action === 'show') {
      const lines = current.flatMap(describeInstalled);
      for (const l of lines) d.ui.output.info(l);
      if (current.length) d.ui.info(`${entry.name}: ${scheduleDescription({ ...entry, schedules: current })}.`, { title: 'Show Output', run: () => d.ui.output.show(true) });
      else d.ui.info(`Nothing is scheduled for ${entry.name}.`);
      return { status: 'done', value: current };
    }
    if (action === 'remove') return await remove(d, entry, env, args, current);
    return await install(d, entry, env, args, title);
  } catch (e) {
    return d.ui.failed(title, e);
  }
}

async function remove(d: ScheduleDeps, entry: Entry, env: ScheduleEnv, args: ScheduleArgs, current: InstalledSchedule[]): Promise<Outcome<ScheduleChange[]>> {
  if (!current.length) {
    d.ui.info(`Nothing is scheduled for ${entry.name}; nothing was changed.`);
    return { status: 'done', value: [] };
  }
  const stop = await d.mayWrite(entry, 'Remove the schedule');
  if (stop) return stop;
  const yes = args.yes === true && !!d.hooks?.bypassArgs;
  const what = current.map((s) => `${TARGET_WORDS[s.target]}: ${s.files.join(', ')}`).join('\n');
  if (
    !yes &&
    !(await confirm(
      { kind: 'schedule', message: `Stop the scheduled backups of ${entry.name}?`, detail: `Removes:\n${what}\n\nThe backups made so far stay.`, action: 'Remove' },
      d.hooks,
    ))
  )
    return declined;
  const removed = await removeSchedule(entry.root, { env });
  d.ui.info(`The scheduled backups of ${entry.name} are removed.`);
  await d.model.refresh();
  return { status: 'done', value: removed };
}

async function install(d: ScheduleDeps, entry: Entry, env: ScheduleEnv, args: ScheduleArgs, title: string): Promise<Outcome<ScheduleChange>> {
  const every =
    args.every ??
    (await pick(
      d.hooks,
      title,
      'How often to back up?',
      SCHEDULE_EVERY.map((e) => ({ label: EVERY_PICKS[e], value: e })),
    ));
  if (!every || !SCHEDULE_EVERY.includes(every)) return declined;
  const full =
    args.full ??
    (await pick<Weekday | 'none'>(d.hooks, title, 'A weekly full backup (the other backups are incremental)?', [
      ...WEEKDAYS.map((w) => ({ label: `Full backup on ${DAY_LABELS[w]}s at 03:00`, value: w })),
      { label: 'No weekly full backup', value: 'none' as const },
    ]));
  if (!full || (full !== 'none' && !WEEKDAYS.includes(full))) return declined;
  const drill =
    args.drill ??
    (await pick(d.hooks, title, 'A weekly restore drill (restores the newest backup into a temp folder and checks it)?', [
      { label: 'Weekly restore drill', value: true },
      { label: 'No drill', value: false },
    ]));
  if (drill === undefined) return declined;
  const spec: ScheduleSpec = { every, ...(full !== 'none' ? { full } : {}), ...(drill ? { drill: true } : {}) };
  const target = args.target ?? (await pickTarget(d, env, title));
  if (!target) return declined;

  const invocation = await findCli();
  if (!invocation) {
    throw new PloneBackupError('SCHEDULE_FAILED', 'No plone-backup command was found on the PATH for cron or systemd to run; nothing was scheduled.', {
      hint: 'Install it (npm install -g plone-backup, or the standalone executable in /usr/local/bin), then schedule again.',
    });
  }
  const stop = await d.mayWrite(entry, title);
  if (stop) return stop;
  const yes = args.yes === true && !!d.hooks?.bypassArgs;
  const where =
    target === 'cron'
      ? 'your crontab (crontab -l / crontab -), every other line kept'
      : `${target === 'systemd' ? env.systemUnitDir : env.userUnitDir}: a timer and a service per job`;
  const as = target === 'systemd' ? 'root' : os.userInfo().username;
  const detail = [
    `Writes ${where}.`,
    `Runs, as ${as}, in ${entry.root}:`,
    `  ${invocation.join(' ')} backup -q (fullbackup -q, drill -q)`,
    '',
    'An earlier schedule of this site is replaced.',
  ].join('\n');
  if (!yes && !(await confirm({ kind: 'schedule', message: `Back up ${entry.name} ${describeSpec(spec)}, from a ${TARGET_WORDS[target]}?`, detail, action: 'Schedule' }, d.hooks)))
    return declined;
  const res = await installSchedule(spec, { root: entry.root, invocation, overrides: entry.overrides }, target, { env });
  d.ui.output.info(
    `Scheduled ${entry.name} (${TARGET_WORDS[target]}): ${describeSpec(spec)}; wrote ${res.written.join(', ')}${res.removed.length ? `; removed ${res.removed.join(', ')}` : ''}`,
  );
  for (const n of res.notes) d.ui.output.warn(n);
  const msg = `${entry.name} is backed up ${describeSpec(spec)} (${TARGET_WORDS[target]}).`;
  if (res.notes.length) d.ui.warn(`${msg} ${res.notes[0]}`, { title: 'Show Output', run: () => d.ui.output.show(true) });
  else d.ui.info(msg);
  await d.model.refresh();
  const { plan: _plan, ...change } = res;
  return { status: 'done', value: change };
}

/** systemd (system units as root, the user's own otherwise) where it runs, or the crontab; asked when there is a choice. */
async function pickTarget(d: ScheduleDeps, env: ScheduleEnv, title: string): Promise<ScheduleTarget | undefined> {
  if (!env.systemdRunning) return 'cron';
  const root = process.getuid?.() === 0;
  const items: Item<ScheduleTarget>[] = [
    ...(root ? [{ label: 'systemd timer', description: '/etc/systemd/system, runs as root', value: 'systemd' as const }] : []),
    { label: 'crontab', description: root ? "root's crontab" : 'your crontab: runs whenever the machine is up', value: 'cron' },
    { label: 'systemd user timer', description: '~/.config/systemd/user: runs while you are logged in, unless lingering is on', value: 'systemd-user' },
  ];
  return pick(d.hooks, title, 'Who runs the backups?', items);
}
