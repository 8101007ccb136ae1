/**
 * Crash hook, preloaded into the CLI with `node -r test/fault/crashhook.js`:
 * it lets the fault suite kill a run right after any step that changes the
 * disk, without touching the engine.
 *
 * It wraps the fs.promises functions that change files or folders (rename,
 * link, unlink, rm, rmdir, mkdir, copyFile, symlink, writeFile, appendFile,
 * truncate, open for writing) and the FileHandle methods write, writeFile,
 * sync, datasync, truncate and close (close of a handle opened for writing),
 * counting every one that completes. The FileHandle prototype is taken from
 * the first handle any open returns (and from one opened here at load time),
 * before the caller gets the handle.
 *
 *   CRASH_AT=N         SIGKILL the process right after step N completed
 *   CRASH_COUNT=1      count only; at exit write the total to CRASH_COUNT_FILE
 *                      (and, with CRASH_LOG_FILE, one line per step)
 *   CRASH_NOTE_FILE    where CRASH_AT writes which step it killed after
 *   STEP_DELAY_MS=M    sleep M ms after every step (a slow run, for races)
 *
 * Steps run concurrently (blob copies go 16 at a time) are counted as they
 * complete, so "after step N" is after the Nth completion: the other steps in
 * flight may or may not have reached the disk, as in a real crash.
 */
'use strict';
const fs = require('node:fs');

const crashAt = Number(process.env.CRASH_AT || 0);
const counting = process.env.CRASH_COUNT === '1';
const countFile = process.env.CRASH_COUNT_FILE;
const logFile = process.env.CRASH_LOG_FILE;
const noteFile = process.env.CRASH_NOTE_FILE;
const delay = Number(process.env.STEP_DELAY_MS || 0);
const sleeper = delay > 0 ? new Int32Array(new SharedArrayBuffer(4)) : undefined;

if (crashAt > 0 || counting || delay > 0) {
  let n = 0;
  const log = [];
  const step = (what, p) => {
    n++;
    if (sleeper) Atomics.wait(sleeper, 0, 0, delay);
    if (counting && logFile) log.push(`${n} ${what} ${p === undefined ? '' : String(p)}`);
    if (n === crashAt) {
      if (noteFile) {
        try {
          fs.writeFileSync(noteFile, `${n} ${what} ${p === undefined ? '' : String(p)}\n`);
        } catch {
          // the note is only for diagnostics
        }
      }
      process.kill(process.pid, 'SIGKILL');
    }
  };
  if (counting) {
    process.on('exit', () => {
      if (countFile) fs.writeFileSync(countFile, String(n));
      if (logFile) fs.writeFileSync(logFile, log.join('\n') + '\n');
    });
  }

  const fsp = fs.promises;
  const writeHandles = new WeakSet();
  const isWriteFlag = (flags) => (typeof flags === 'string' ? /[wa+]/.test(flags) : typeof flags === 'number' && (flags & 3) !== 0);

  const wrap = (obj, name, describe, counts = () => true) => {
    const orig = obj[name];
    if (typeof orig !== 'function') return;
    obj[name] = function (...args) {
      const p = orig.apply(this, args);
      return p.then((v) => {
        if (counts.call(this, args, v)) step(name, describe.call(this, args));
        return v;
      });
    };
  };

  let patched = false;
  const patchHandle = (proto) => {
    if (patched) return;
    patched = true;
    const where = function () {
      return this.__crashPath;
    };
    for (const m of ['write', 'writeFile', 'sync', 'datasync', 'truncate']) wrap(proto, m, where);
    wrap(proto, 'close', where, function () {
      return writeHandles.has(this);
    });
  };

  const origOpen = fsp.open;
  fsp.open = async function (p, flags, mode) {
    const fh = await origOpen.call(this, p, flags, mode);
    patchHandle(Object.getPrototypeOf(fh));
    try {
      Object.defineProperty(fh, '__crashPath', { value: String(p), enumerable: false });
    } catch {
      // a frozen handle: no path in the log
    }
    if (isWriteFlag(flags)) {
      writeHandles.add(fh);
      // close is an instance property (an arrow function) in some Node versions
      if (Object.prototype.hasOwnProperty.call(fh, 'close')) wrap(fh, 'close', () => String(p));
      step('open', p);
    }
    return fh;
  };
  // The prototype as early as possible, too.
  origOpen(__filename, 'r').then(
    (fh) => {
      patchHandle(Object.getPrototypeOf(fh));
      return fh.close();
    },
    () => undefined,
  );

  const first = (args) => args[0];
  const both = (args) => `${args[0]} -> ${args[1]}`;
  for (const m of ['unlink', 'rm', 'rmdir', 'mkdir', 'mkdtemp', 'writeFile', 'appendFile', 'truncate']) wrap(fsp, m, first);
  for (const m of ['rename', 'link', 'copyFile', 'symlink']) wrap(fsp, m, both);
}
