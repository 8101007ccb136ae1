/**
 * `plone-backup status`: a Nagios/Icinga plugin over the run log and the
 * backup folders (the engine's deploymentStatus says what each level means).
 * One line on stdout, `LABEL - text | perfdata`, and the plugin's exit status:
 * 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (no deployment, bad options, a
 * metrics file that could not be written: the check itself failed).
 */

import { DEFAULT_CRIT_AGE, DEFAULT_WARN_AGE, PloneBackupError, deploymentStatus, discoverDeployment, parseDuration, toPloneBackupError, writeStatusMetrics } from '../engine';
import * as path from 'node:path';
import type { CliIo } from './io';
import { locationOverrides, parseDeployArgs } from './deploy';

export const STATUS_HELP = `Usage: plone-backup status [--warn-age 26h] [--crit-age 50h] [--json] [--prometheus FILE] [-q]

How the backups of the site are doing, from the run log (.plone-backup.runs.jsonl in the
main storage's backups folder) and the backup folders, as a Nagios/Icinga plugin: one line
with perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

  CRITICAL  a storage never backed up, or last backed up longer ago than --crit-age;
            the last run of a backup command, verify or drill failed (until one succeeds)
  WARNING   last backed up longer ago than --warn-age; the last restore or check failed;
            the run log is there but cannot be read
  UNKNOWN   no deployment found, bad options, the metrics file cannot be written

Options:
  --warn-age AGE      default 26h (AGE: 90m, 26h, 2d, 1h30m or seconds)
  --crit-age AGE      default 50h
  --json              print the data (last success and failure per command, per storage
                      the last backup, its age, size and backups, the last drill)
  --prometheus FILE   also write node_exporter textfile metrics to FILE (atomically)
  -q, --quiet         print nothing (with --prometheus, for cron); the exit status stays
  --dir, --config, --file, --blob-dir, --backup-dir, --part  as for the other commands
`;

export async function statusMain(argv: string[], io: CliIo): Promise<number> {
  try {
    const p = parseDeployArgs(argv);
    if (p.flags.has('help')) {
      io.stdout.write(STATUS_HELP);
      return 0;
    }
    if (p.positional.length) throw new PloneBackupError('USAGE', 'status takes no arguments.');
    const age = (name: string, dflt: number) => {
      const v = p.values.get(name);
      if (v === undefined) return dflt;
      const s = parseDuration(v);
      if (s === undefined) throw new PloneBackupError('USAGE', `--${name} takes an age such as 26h, 90m, 2d or a number of seconds, not "${v}".`);
      return s;
    };
    const dep = await discoverDeployment(p.values.get('dir') ?? process.cwd(), locationOverrides(p));
    const status = await deploymentStatus(dep, { warnAge: age('warn-age', DEFAULT_WARN_AGE), critAge: age('crit-age', DEFAULT_CRIT_AGE) });
    const prom = p.values.get('prometheus');
    if (prom !== undefined) {
      try {
        await writeStatusMetrics(path.resolve(prom), status);
      } catch (e) {
        const err = toPloneBackupError(e);
        io.stdout.write(`UNKNOWN - the metrics file ${prom} could not be written: ${err.message}\n`);
        return 3;
      }
    }
    if (p.flags.has('json')) io.stdout.write(JSON.stringify(status, null, 2) + '\n');
    else if (!p.flags.has('quiet')) io.stdout.write(status.line + '\n');
    return status.level;
  } catch (e) {
    const err = toPloneBackupError(e);
    io.stdout.write(`UNKNOWN - ${err.userMessage.replace(/\s+/g, ' ')}\n`);
    return 3;
  }
}
