/**
 * What a restore may replace and write into: only a FileStorage with a
 * FileStorage, and blobs only into a folder that looks like a blobstorage.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError } from '../../base/errors';
import { openRegular } from '../../base/io';
import { loadPickle } from '../../zodb/pickle';
import { LAYOUT_FILE, BLOB_TMP_DIR } from '../../zodb/blobdir';

/**
 * Refuses to put anything but a FileStorage at a database's path, or to
 * replace anything but one: a configuration may point `file` at any file of
 * the user's (~/.bashrc), and a backup folder may hold anything whose md5
 * matches its own .dat. Checks the FS21/FS30 magic of a regular file.
 */
export async function assertFileStorage(file: string, role: 'written' | 'replaced'): Promise<void> {
  let fh;
  try {
    fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (e) {
    if (role === 'replaced' && (e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    const st = await fh.stat();
    const head = Buffer.alloc(4);
    const { bytesRead } = st.isFile() ? await fh.read(head, 0, 4, 0) : { bytesRead: 0 };
    const magic = head.toString('latin1', 0, bytesRead);
    if (magic === 'FS21' || magic === 'FS30') return;
    throw role === 'written'
      ? new PloneBackupError('NOT_FILESTORAGE', `The restored ${path.basename(file)} is not a ZODB FileStorage (no FS21/FS30 magic); nothing was restored.`, {
          path: file,
          position: 0,
          hint: 'The backup folder holds something else than backups; check where it comes from.',
        })
      : new PloneBackupError('UNSAFE', `${file} is not a ZODB FileStorage (no FS21/FS30 magic), so a restore will not replace it; nothing was restored.`, {
          path: file,
          position: 0,
          hint: 'Check the storage paths (plone-backup.json, zope.conf, --file); move the file away if it really is to be replaced.',
        });
  } finally {
    await fh.close();
  }
}

/**
 * Refuses to restore blobs into a folder that is no blobstorage: a
 * configuration's `blobDir` may name ~/.ssh. A blobstorage has `.layout`, or
 * only ZODB's own names (0x.. folders, tmp), or nothing yet.
 */
export async function assertBlobTarget(dir: string): Promise<void> {
  let names: string[];
  try {
    if (!(await fsp.stat(dir)).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    if ((await fsp.lstat(path.join(dir, LAYOUT_FILE)).catch(() => undefined))?.isFile()) return;
    names = await fsp.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'ENOTDIR') throw e;
    names = ['(a file)'];
  }
  const foreign = names.filter((n) => n !== BLOB_TMP_DIR && !/^0x[0-9a-f]{2,16}$/.test(n));
  if (foreign.length === 0) return;
  throw new PloneBackupError(
    'UNSAFE',
    `${dir} does not look like a blobstorage (no ${LAYOUT_FILE}, and it holds ${foreign[0]}), so a restore will not write into it; nothing was restored.`,
    {
      path: dir,
      hint: 'Check the blob folder in plone-backup.json, zope.conf or --blob-dir.',
    },
  );
}

/** The committed end an index file describes (its first pickle), or undefined. */
export async function indexPos(file: string): Promise<number | undefined> {
  try {
    const fh = await openRegular(file);
    try {
      const b = Buffer.alloc(32);
      const { bytesRead } = await fh.read(b, 0, 32, 0);
      const v = loadPickle(b.subarray(0, bytesRead), 0, file).value;
      return typeof v === 'number' ? v : undefined;
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}
