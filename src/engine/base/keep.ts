/**
 * Keeping the replaced state aside: the one naming scheme and the one way of
 * doing it, for repozo -R -o (repozo/recover.ts) and for a deployment restore
 * (deploy/restore/).
 *
 * The kept name is `<live>.before-restore-<stamp>`, with `-1`, `-2`... when
 * that name is taken (two restores in one second never overwrite what the
 * first one kept). The stamp comes from the operation's clock (its `now`
 * option), taken once per operation, so every file one restore keeps carries
 * the same stamp. A kept Data.fs takes its index with it as
 * `<kept Data.fs>.index`, the pair ZODB opens together.
 *
 * Data.fs is kept by a hard link (a copy across filesystems or where links are
 * refused), so the live name holds the whole old file until the new one is
 * renamed over it; an index or a blob tree is moved aside by a rename.
 */

import { exists, fileLayer } from './io';
import { formatStamp } from '../zodb/tid';

export const KEPT_INFIX = '.before-restore-';

/** The stamp of the kept names of one operation, from its clock. */
export function keepStamp(now: () => Date = () => new Date()): string {
  return formatStamp(now());
}

/** The first free kept name for `live`: `<live>.before-restore-<stamp>`, then `-1`, `-2`... */
export async function keptName(live: string, stamp: string): Promise<string> {
  const base = `${live}${KEPT_INFIX}${stamp}`;
  let name = base;
  for (let i = 1; (await exists(name)) || (await exists(`${name}.index`)); i++) name = `${base}-${i}`;
  return name;
}

/**
 * Keeps the Data.fs `file` (and its index) aside while `file` stays in place:
 * a hard link (or a copy) under the kept name, and the index renamed to
 * `<kept>.index`, so a crash before the new file lands leaves no index (ZODB
 * rebuilds it) rather than a wrong one. Returns what was kept.
 */
export async function keepDataFs(file: string, stamp: string): Promise<string[]> {
  const index = `${file}.index`;
  const name = await keptName(file, stamp);
  if (!(await exists(file))) {
    // An index without its Data.fs: kept all the same, under the name it would have had.
    if (!(await exists(index))) return [];
    await fileLayer.rename(index, `${name}.index`);
    return [`${name}.index`];
  }
  await fileLayer.link(file, name).catch(async (e) => {
    if (!['EXDEV', 'EPERM', 'ENOTSUP', 'EMLINK'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    await fileLayer.copyFile(file, name);
  });
  const kept = [name];
  if (await exists(index)) {
    await fileLayer.rename(index, `${name}.index`);
    kept.push(`${name}.index`);
  }
  return kept;
}

/** Moves the file or tree `live` aside under its kept name; undefined when there is nothing there. */
export async function moveAside(live: string, stamp: string): Promise<string | undefined> {
  if (!(await exists(live))) return undefined;
  const name = await keptName(live, stamp);
  await fileLayer.rename(live, name);
  return name;
}

/** Puts the already built tree `built` (e.g. a tree of hard links of the live one) under `live`'s kept name. */
export async function keepBuilt(live: string, built: string, stamp: string): Promise<string> {
  const name = await keptName(live, stamp);
  await fileLayer.rename(built, name);
  return name;
}

/** Removes what was kept (the caller did not want the old state). */
export async function dropKept(kept: string[]): Promise<void> {
  for (const k of kept) await fileLayer.rm(k, { recursive: true, force: true });
}
