/**
 * `plone-backup repozo`: repozo's command line, option for option, so a cron
 * line calling bin/repozo works unchanged with `plone-backup repozo`.
 * Parsing follows Python's getopt: clustered short options, a value glued or
 * in the next word, long options with "=" or the next word, unique prefixes.
 */

import { PloneBackupError, backup, normalizeDateArg, recover, verify } from '../engine';
import { type CliIo, parseCompressLevel, progressPrinter } from './io';

const SHORT = 'BRVvhr:f:FQzkD:o:w';
const LONG = [
  'backup',
  'recover',
  'verify',
  'verbose',
  'help',
  'repository=',
  'file=',
  'full',
  'quick',
  'gzip',
  'kill-old-on-full',
  'date=',
  'output=',
  'with-verify',
  // ours
  'discard-old',
  'lock-wait=',
  'compress-level=',
];

const LONG_TO_SHORT: Record<string, string> = {
  backup: 'B',
  recover: 'R',
  verify: 'V',
  verbose: 'v',
  help: 'h',
  repository: 'r',
  file: 'f',
  full: 'F',
  quick: 'Q',
  gzip: 'z',
  'kill-old-on-full': 'k',
  date: 'D',
  output: 'o',
  'with-verify': 'w',
};

export const REPOZO_USAGE = `Usage: plone-backup repozo [options]

repozo-compatible full and incremental backups of a Data.fs and its index.

    Exactly one of -B, -R, or -V must be specified:

    -B / --backup          Backup current ZODB file.
    -R / --recover         Restore a ZODB file from a backup.
    -V / --verify          Verify backup integrity.
    -v / --verbose         Verbose mode.
    -h / --help            Print this text and exit.
    -r dir / --repository=dir
                           Repository directory containing the backup files.
                           Required. The directory must already exist.

Options for -B/--backup:
    -f file / --file=file  Source Data.fs file. Required.
    -F / --full            Force a full backup.
    -Q / --quick           Check only the last piece's range against its .dat md5.
    -z / --gzip            Compress the backup files with gzip.
    -k / --kill-old-on-full
                           After a full backup, remove older backup files.

Options for -R/--recover:
    -D str / --date=str    Recover state as of this UTC date: yyyy-mm-dd[-hh[-mm[-ss]]].
                           Default: now.
    -o file / --output=file
                           Write the recovered Data.fs (and its .index) there.
                           Default: standard output (without index).
                           The file it replaces is kept beside it as
                           <file>.before-restore-<stamp> unless --discard-old.
    -w / --with-verify     Check every piece against the .dat while recovering.

Options for -V/--verify:
    -Q / --quick           Verify file sizes only (skip md5 checksums).

Plone Backup additions:
    --discard-old          With -R -o: do not keep the replaced Data.fs.
    --lock-wait=SECONDS    Wait this long for another run on the repository (default 10).
    --compress-level=N     With -B -z: the gzip level, 1 (fastest) to 9 (smallest);
                           default 6 (repozo compresses at 9). Pieces are
                           compressed on every core as gzip members of 4 MB,
                           which repozo reads as one stream.
`;

export interface RepozoOptions {
  mode?: 'backup' | 'recover' | 'verify';
  verbose: boolean;
  help: boolean;
  repository?: string;
  file?: string;
  full: boolean;
  quick: boolean;
  gzip: boolean;
  killOld: boolean;
  date?: string;
  output?: string;
  withVerify: boolean;
  discardOld: boolean;
  lockWaitMs?: number;
  /** --compress-level (with -z). */
  compressLevel?: number;
  /** Messages repozo logs for ignored options (shown with -v). */
  notes: string[];
}

function usageError(msg: string): PloneBackupError {
  return new PloneBackupError('USAGE', msg, { hint: 'See plone-backup repozo --help.' });
}

/** getopt-style parsing of repozo's options. */
export function parseRepozoArgs(argv: string[]): RepozoOptions {
  const o: RepozoOptions = {
    verbose: false,
    help: false,
    full: false,
    quick: false,
    gzip: false,
    killOld: false,
    withVerify: false,
    discardOld: false,
    notes: [],
  };
  const pairs: [string, string | undefined][] = [];
  const args: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const a = argv[i++]!;
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    if (a.startsWith('--')) {
      const [name, glued] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
      const exact = LONG.find((l) => l.replace(/=$/, '') === name);
      const matches = exact ? [exact] : LONG.filter((l) => l.startsWith(name));
      if (matches.length === 0) throw usageError(`option --${name} not recognized`);
      if (matches.length > 1) throw usageError(`option --${name} not a unique prefix`);
      const spec = matches[0]!;
      const full = spec.replace(/=$/, '');
      if (spec.endsWith('=')) {
        let v = glued;
        if (v === undefined) {
          if (i >= argv.length) throw usageError(`option --${full} requires argument`);
          v = argv[i++]!;
        }
        pairs.push([full, v]);
      } else {
        if (glued !== undefined) throw usageError(`option --${full} must not have an argument`);
        pairs.push([full, undefined]);
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      let j = 1;
      while (j < a.length) {
        const c = a[j++]!;
        const k = SHORT.indexOf(c);
        if (k < 0 || c === ':') throw usageError(`option -${c} not recognized`);
        if (SHORT[k + 1] === ':') {
          let v = a.slice(j);
          if (v === '') {
            if (i >= argv.length) throw usageError(`option -${c} requires argument`);
            v = argv[i++]!;
          }
          pairs.push([c, v]);
          break;
        }
        pairs.push([c, undefined]);
      }
      continue;
    }
    // getopt stops at the first non-option argument.
    args.push(a, ...argv.slice(i));
    break;
  }
  const setMode = (m: RepozoOptions['mode']) => {
    if (o.mode !== undefined) throw usageError('-B, -R, and -V are mutually exclusive');
    o.mode = m;
  };
  for (const [name, v] of pairs) {
    const s = name.length === 1 ? name : (LONG_TO_SHORT[name] ?? name);
    switch (s) {
      case 'h':
        o.help = true;
        return o;
      case 'v':
        o.verbose = true;
        break;
      case 'B':
        setMode('backup');
        break;
      case 'R':
        setMode('recover');
        break;
      case 'V':
        setMode('verify');
        break;
      case 'Q':
        o.quick = true;
        break;
      case 'f':
        o.file = v;
        break;
      case 'r':
        o.repository = v;
        break;
      case 'F':
        o.full = true;
        break;
      case 'D':
        o.date = v;
        break;
      case 'o':
        o.output = v;
        break;
      case 'z':
        o.gzip = true;
        break;
      case 'k':
        o.killOld = true;
        break;
      case 'w':
        o.withVerify = true;
        break;
      case 'discard-old':
        o.discardOld = true;
        break;
      case 'compress-level':
        o.compressLevel = parseCompressLevel(v!);
        break;
      case 'lock-wait': {
        const secs = Number(v);
        if (!Number.isFinite(secs) || secs < 0) throw usageError('--lock-wait takes a number of seconds');
        o.lockWaitMs = secs * 1000;
        break;
      }
    }
  }
  if (args.length) throw usageError(`Invalid arguments: ${args.join(', ')}`);
  if (o.mode === undefined) throw usageError('Either --backup, --recover or --verify is required');
  if (o.repository === undefined) throw usageError('--repository is required');
  const ignore = (cond: boolean, what: string, mode: string, reset: () => void) => {
    if (cond) {
      o.notes.push(`--${what} option is ignored in ${mode} mode`);
      reset();
    }
  };
  if (o.mode === 'backup') {
    ignore(o.date !== undefined, 'date', 'backup', () => (o.date = undefined));
    ignore(o.output !== undefined, 'output', 'backup', () => (o.output = undefined));
    ignore(o.withVerify, 'with-verify', 'backup', () => (o.withVerify = false));
    if (!o.file) throw usageError('--file is required in backup mode');
  } else if (o.mode === 'recover') {
    ignore(o.file !== undefined, 'file', 'recover', () => (o.file = undefined));
    ignore(o.killOld, 'kill-old-on-full', 'recover', () => (o.killOld = false));
    ignore(o.compressLevel !== undefined, 'compress-level', 'recover', () => (o.compressLevel = undefined));
  } else {
    ignore(o.date !== undefined, 'date', 'verify', () => (o.date = undefined));
    ignore(o.output !== undefined, 'output', 'verify', () => (o.output = undefined));
    ignore(o.full, 'full', 'verify', () => (o.full = false));
    ignore(o.gzip, 'gzip', 'verify', () => (o.gzip = false));
    ignore(o.file !== undefined, 'file', 'verify', () => (o.file = undefined));
    ignore(o.killOld, 'kill-old-on-full', 'verify', () => (o.killOld = false));
    ignore(o.compressLevel !== undefined, 'compress-level', 'verify', () => (o.compressLevel = undefined));
    ignore(o.withVerify, 'with-verify', 'verify', () => (o.withVerify = false));
  }
  return o;
}

/** Runs repozo; returns the exit status (0 ok, 1 failure, as repozo). */
export async function repozoMain(argv: string[], io: CliIo): Promise<number> {
  const o = parseRepozoArgs(argv);
  if (o.help) {
    io.stdout.write(REPOZO_USAGE);
    return 0;
  }
  const log = o.verbose ? (m: string) => io.stderr.write(m + '\n') : undefined;
  for (const n of o.notes) log?.(n);
  const progress = o.verbose ? undefined : progressPrinter(io);
  try {
    if (o.mode === 'backup') {
      const r = await backup({
        file: o.file!,
        repository: o.repository!,
        full: o.full,
        quick: o.quick,
        gzip: o.gzip,
        compressLevel: o.compressLevel,
        killOld: o.killOld,
        lockWaitMs: o.lockWaitMs,
        log,
        signal: io.signal,
        onProgress: progress?.update,
      });
      progress?.done();
      log?.(`${r.action}: ${r.reason}${r.piece ? ` (${r.piece}, bytes ${r.start}..${r.end})` : ''}`);
    } else if (o.mode === 'recover') {
      const date = o.date !== undefined ? normalizeDateArg(o.date) : undefined;
      const r = await recover({
        repository: o.repository!,
        output: o.output,
        stream: io.stdout,
        date,
        withVerify: o.withVerify,
        keepOld: !o.discardOld,
        log,
        signal: io.signal,
        onProgress: o.output ? progress?.update : undefined,
      });
      progress?.done();
      log?.(`Recovered ${r.bytes} bytes, md5: ${r.md5}`);
      for (const k of r.keptOld ?? []) io.stderr.write(`kept the previous file as ${k}\n`);
    } else {
      const r = await verify({ repository: o.repository!, quick: o.quick, log, signal: io.signal, onProgress: progress?.update });
      progress?.done();
      for (const p of r.pieces) log?.(`Verifying ${p.name}: ${p.problem ?? 'ok'}`);
      const first = r.pieces.find((p) => p.problem);
      if (first) throw new PloneBackupError(first.code ?? 'PIECE_MISMATCH', first.problem!);
      if (r.unregistered.length) {
        throw new PloneBackupError('PIECE_MISMATCH', `${r.unregistered.join(', ')} is not listed in ${r.dat}.`);
      }
    }
    return 0;
  } finally {
    progress?.done();
  }
}
