/** What a CLI command gets from the process: streams, a TTY flag, an abort signal. */

import { realpathSync } from 'node:fs';
import * as path from 'node:path';
import { isSea } from 'node:sea';
import { DEFAULT_COMPRESS_LEVEL, MAX_COMPRESS_LEVEL, MIN_COMPRESS_LEVEL, PloneBackupError, isCompressLevel, progressLine } from '../engine';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Progress is drawn only on a terminal; under cron the CLI stays silent unless something fails. */
  isTTY: boolean;
  signal?: AbortSignal;
  stdin?: NodeJS.ReadableStream;
}

export function processIo(signal?: AbortSignal): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, isTTY: !!process.stderr.isTTY, signal, stdin: process.stdin };
}

/** A one-line progress display on stderr (terminal only), redrawn at most 10 times a second. */
export function progressPrinter(io: CliIo): { update: (p: { phase: string; done: number; total?: number }) => void; done: () => void } | undefined {
  if (!io.isTTY) return undefined;
  let last = 0;
  let shown = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      io.stderr.write(`\r\x1b[K${progressLine(p)}`);
      shown = true;
    },
    done() {
      if (shown) io.stderr.write('\r\x1b[K');
      shown = false;
    },
  };
}

/** The value of --compress-level: a whole number from 1 to 9, else a USAGE error. */
export function parseCompressLevel(v: string): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!isCompressLevel(n)) {
    throw new PloneBackupError('USAGE', `--compress-level takes a whole number from ${MIN_COMPRESS_LEVEL} (fastest) to ${MAX_COMPRESS_LEVEL} (smallest), not ${v}.`, {
      hint: `Leave it out for the default, ${DEFAULT_COMPRESS_LEVEL}.`,
    });
  }
  return n;
}

/**
 * How this very plone-backup runs, for what runs it again (the demo's writer,
 * bin/ scripts, a systemd unit, a crontab line): the standalone executable of
 * `npm run dist` alone (node and the CLI in one file, taking the command as
 * its first argument); else node and the CLI's script, resolved through links
 * (npm's bin link /usr/local/bin/plone-backup is the script itself, which
 * node must run).
 */
export function selfInvocation(): string[] {
  const script = process.argv[1];
  if (isSea() || !script) return [process.execPath];
  const abs = path.resolve(script);
  try {
    return [process.execPath, realpathSync(abs)];
  } catch {
    return [process.execPath, abs];
  }
}
