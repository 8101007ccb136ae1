/**
 * The `plone-backup` command: a thin shell over the engine. Each subcommand
 * parses its arguments, calls the engine, and prints; errors reach the user
 * as one sentence with what to do, and a non-zero exit status.
 */

import { PloneBackupError, toPloneBackupError } from '../engine';
import { type CliIo, processIo } from './io';
import { repozoMain } from './repozo';
import { demoMain, demoWriterMain } from './demo';
import { DEPLOY_HELP, deployMain } from './deploy';
import { statusMain } from './status';
import { scheduleMain } from './schedule';

const VERSION = '0.1.0';

const HELP = `Usage: plone-backup <command> [options]

Commands:
  repozo [options]   repozo-compatible backup (-B), recover (-R) and verify (-V)
                     of a Data.fs; see plone-backup repozo --help
  demo               a sample deployment in a temp folder: a writer keeps committing
                     while it is backed up, checked, drilled and restored
  status             how the backups are doing, from the run log, as a Nagios/Icinga
                     plugin (--json, --prometheus FILE); see plone-backup status --help
  schedule install|show|remove
                     back up from systemd timers or cron: --every 15m|1h|daily,
                     --full WEEKDAY, --drill weekly; see plone-backup schedule --help
  help               this text
  --version          the version

`;

type Command = (argv: string[], io: CliIo) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  repozo: repozoMain,
  demo: demoMain,
  status: statusMain,
  schedule: scheduleMain,
  // Hidden: the demo's writer process.
  'demo-writer': demoWriterMain,
};
for (const c of [
  'backup',
  'fullbackup',
  'snapshot',
  'snapshotbackup',
  'zipbackup',
  'restore',
  'snapshotrestore',
  'ziprestore',
  'altrestore',
  'list',
  'verify',
  'check',
  'drill',
  'scripts',
  'push',
  'forget',
]) {
  COMMANDS[c] = (argv, io) => deployMain(c, argv, io);
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    io.stdout.write(HELP + DEPLOY_HELP);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version') {
    io.stdout.write(VERSION + '\n');
    return 0;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    io.stderr.write(`plone-backup: unknown command "${cmd}". Run plone-backup help for the list.\n`);
    return 2;
  }
  try {
    return await run(rest, io);
  } catch (e) {
    const err = toPloneBackupError(e);
    io.stderr.write(`plone-backup ${cmd}: ${err.userMessage}\n`);
    if (process.env.PLONE_BACKUP_DEBUG && err.stack) io.stderr.write(err.stack + '\n');
    // repozo exits 1 on every failure, usage errors included; other commands use 2 for
    // usage (a bad DATE argument is one too) and a configuration that cannot be used.
    return (PloneBackupError.is(err, 'USAGE') || PloneBackupError.is(err, 'DATE_BAD') || PloneBackupError.is(err, 'CONFIG_BAD')) && cmd !== 'repozo' ? 2 : 1;
  }
}

if (require.main === module) {
  const ac = new AbortController();
  let interrupted = 0;
  const onSignal = () => {
    if (++interrupted > 1) process.exit(130);
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // The AWS SDK warns once per process, on stderr, that its releases after January 2027 need
  // Node 22. Our SDK is pinned (package-lock), so the warning is about versions we do not run,
  // and from cron every push would mail it to the administrator. Whoever sets the variable wins.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  // A closed stdout (e.g. `repozo -R | head`) must not crash with EPIPE noise.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(1);
  });
  main(process.argv.slice(2), processIo(ac.signal)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`plone-backup: ${String(e?.stack ?? e)}\n`);
      process.exitCode = 1;
    },
  );
}
