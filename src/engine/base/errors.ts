/**
 * Typed errors of the engine.
 *
 * Every failure the user can cause or meet (a foreign file, a torn piece, a
 * garbled .dat, a locked repository) is a PloneBackupError with a stable
 * `code` that callers (CLI, extension, tests) switch on, the `path` and, where
 * it means something, the byte `position` involved. `message` is one sentence
 * saying what is wrong; `hint` says what to do about it.
 */

export type ErrorCode =
  | 'NOT_FILESTORAGE' // wrong magic, empty file
  | 'FS_CORRUPT' // a committed transaction that does not add up
  | 'INDEX_BAD' // a Data.fs.index / .index that is not the pickle stream we expect
  | 'DAT_BAD' // a garbled .dat line
  | 'REPO_MISSING' // repository directory does not exist
  | 'NO_BACKUPS' // repository has no backup (before the date)
  | 'PIECE_MISSING' // a piece named by the chain or .dat is not there
  | 'PIECE_MISMATCH' // size or md5 of a piece differs from its .dat
  | 'PIECE_BAD' // a piece that cannot be read (bad gzip, truncated)
  | 'ARCHIVE_BAD' // a blob tar archive that is damaged or unsafe
  | 'BLOB_MISSING' // a blob file a committed record references is not there
  | 'SITE_RUNNING' // the site holds Data.fs.lock
  | 'NOT_FOUND' // a generation or deployment asked for does not exist
  | 'CHAIN_BROKEN' // pieces of a chain do not follow each other
  | 'WOULD_OVERWRITE' // a target file exists and we refuse to replace it
  | 'LOCKED' // another run holds the lock
  | 'DATE_BAD' // a -D value that is not yyyy-mm-dd[-hh[-mm[-ss]]]
  | 'SOURCE_MISSING' // Data.fs not found
  | 'SOURCE_CHANGED' // Data.fs replaced/shrunk while we read it (a pack)
  | 'USAGE' // wrong command-line use
  | 'KEEP_NEWEST' // a deletion that would take the newest complete backup, which is always kept
  | 'COMMAND_FAILED' // a pre_command / post_command that exited non-zero
  | 'CHECK_FAILED' // a check that found errors (recorded in the run log; the CLI exits 1)
  | 'DRILL_FAILED' // a restore drill that found a problem (recorded in the run log; the CLI exits 1)
  | 'CONFIG_BAD' // a buildout.cfg / plone-backup.json that cannot be used as written (a location inside another, a cycle in extends)
  | 'ABORTED' // the AbortSignal fired
  | 'MANIFEST_BAD' // a blob generation's .plone-backup.json that is not what we write (a foreign path, garbage)
  | 'UNSAFE' // input that would make us read, write or delete outside where it belongs (a path, a link, a manifest)
  | 'SCHEDULE_FAILED' // systemctl or crontab failed, or the unit folder cannot be written (plone-backup schedule)
  | 'TOO_LARGE' // a metadata file (config, manifest, .dat, index) beyond any sane size, or not a regular file
  | 'REMOTE_FAILED' // a remote (S3, file://) request that failed: unreachable, refused, no such bucket, denied
  | 'REMOTE_KEY' // an encrypted remote and no key or another key, or a key for a plain remote (the two never mix)
  | 'REMOTE_BAD' // what a remote holds is not what we wrote (a garbled manifest, an object whose checksum differs), or a remote URL that cannot be used
  | 'IO'; // an OS error we did not expect, wrapped

export interface ErrorDetails {
  path?: string;
  position?: number;
  hint?: string;
  cause?: unknown;
}

export class PloneBackupError extends Error {
  readonly code: ErrorCode;
  readonly path?: string;
  readonly position?: number;
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = 'PloneBackupError';
    this.code = code;
    this.path = details.path;
    this.position = details.position;
    this.hint = details.hint;
  }

  /** True when `e` is one of ours (optionally with the given code). */
  static is(e: unknown, code?: ErrorCode): e is PloneBackupError {
    return e instanceof PloneBackupError && (code === undefined || e.code === code);
  }

  /** The message and the hint as the single line a user reads. */
  get userMessage(): string {
    if (!this.hint) return this.message;
    return /[.!?]$/.test(this.message) ? `${this.message} ${this.hint}` : `${this.message}. ${this.hint}`;
  }
}

/** Turns any thrown value into a PloneBackupError, keeping ours as they are. */
export function toPloneBackupError(e: unknown, path?: string): PloneBackupError {
  if (PloneBackupError.is(e)) return e;
  if (isAbort(e)) return new PloneBackupError('ABORTED', 'The operation was cancelled; nothing was changed.', { cause: e });
  const err = e as NodeJS.ErrnoException;
  const where = err?.path ?? path;
  if (err && typeof err.code === 'string') {
    const hint =
      err.code === 'ENOSPC' || err.code === 'EDQUOT'
        ? 'Free some disk space and run it again.'
        : err.code === 'EACCES' || err.code === 'EPERM'
          ? 'Check the permissions of that folder.'
          : err.code === 'ENOTDIR'
            ? 'A file stands where a folder is expected: check the paths (--backup-dir, plone-backup.json).'
            : err.code === 'EROFS'
              ? 'Back up to a writable filesystem.'
              : undefined;
    return new PloneBackupError('IO', `${describeErrno(err.code)}${where ? ` at ${where}` : ''}.`, {
      path: where,
      hint,
      cause: e,
    });
  }
  return new PloneBackupError('IO', String(err?.message ?? e), { path: where, cause: e });
}

function describeErrno(code: string): string {
  switch (code) {
    case 'ENOENT':
      return 'No such file or folder';
    case 'ENOSPC':
      return 'The disk is full';
    case 'EACCES':
    case 'EPERM':
      return 'Permission denied';
    case 'EIO':
      return 'The disk reported an I/O error';
    case 'EXDEV':
      return 'Cannot link across filesystems';
    case 'ENOTDIR':
      return 'Not a folder';
    case 'EROFS':
      return 'The filesystem is read-only';
    case 'EDQUOT':
      return 'The disk quota is exceeded';
    default:
      return `System error ${code}`;
  }
}

export function isAbort(e: unknown): boolean {
  return (e as Error)?.name === 'AbortError' || PloneBackupError.is(e, 'ABORTED');
}

/** Throws ABORTED when the signal fired. Call it between steps of long work. */
export function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) {
    throw new PloneBackupError('ABORTED', 'The operation was cancelled; nothing was changed.');
  }
}
