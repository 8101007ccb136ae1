// Helpers for the UI scripts of test/extension/ui/ (this file is not a script):
// the engine as the tests compile it, what is on the disk (md5 of files and
// trees), times as a person in a given time zone reads them, and what the user
// sees on the screen, to put into a failure's message; and the steps the
// journeys share: the workbench's parts, answering a modal dialog, picking a
// row of a quick pick, opening Restore….
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const require = createRequire(import.meta.url);
/** The engine as the tests compile it (npx tsc -p tsconfig.test.json). */
export const engine = require(path.join(repo, 'out/src/engine/internal.js'));

export const md5 = (file) => crypto.createHash('md5').update(fs.readFileSync(file)).digest('hex');

/** Every file below `dir` (links not followed), as { relative path: md5 } in path order; {} when absent. */
export function treeMd5(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = e.isFile() ? md5(p) : `(${e.isSymbolicLink() ? 'link' : 'special'})`;
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

/** What differs between two treeMd5 results, in words ('' when equal). */
export function treeDiff(want, got) {
  const lines = [];
  for (const k of Object.keys(want)) if (!(k in got)) lines.push(`missing ${k}`);
  for (const k of Object.keys(got)) if (!(k in want)) lines.push(`extra ${k}`);
  for (const k of Object.keys(want)) if (k in got && got[k] !== want[k]) lines.push(`changed ${k}`);
  return lines.join('; ');
}

const ls = (dir) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);
export { ls };

/**
 * A moment as the extension words it for a person in `zone` (an IANA name):
 * `yyyy-mm-dd hh:mm:ss` and the zone's short name ("2025-06-10 10:30:00 CEST"),
 * nothing after the time where the zone is at UTC+0 then. Computed with Intl
 * for that zone, whatever zone this process runs in. `minutes: true` leaves the
 * seconds and the zone out (what a person types: "2025-06-10 10:31").
 */
export function localIn(zone, date, { minutes = false } = {}) {
  const parts = (locale, extra) => Object.fromEntries(new Intl.DateTimeFormat(locale, { timeZone: zone, ...extra }).formatToParts(date).map((p) => [p.type, p.value]));
  const p = parts('en-GB', { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  const day = `${p.year}-${p.month}-${p.day}`;
  if (minutes) return `${day} ${p.hour}:${p.minute}`;
  const offset = parts('en-GB', { timeZoneName: 'longOffset' }).timeZoneName; // "GMT+02:00", or "GMT" at +0
  let name = '';
  if (offset !== 'GMT') {
    // As the extension names it (src/engine/base/wording.ts, zoneName): en-US's name, else en-GB's.
    const us = parts('en-US', { timeZoneName: 'short' }).timeZoneName ?? '';
    const gb = parts('en-GB', { timeZoneName: 'short' }).timeZoneName ?? '';
    name = !us.startsWith('GMT') ? us : gb && !gb.startsWith('GMT') && !gb.startsWith('UTC') ? gb : us;
  }
  return `${day} ${p.hour}:${p.minute}:${p.second}${name ? ` ${name}` : ''}`;
}

/** Text on one line, its runs of white space as one space. */
export const oneLine = (s) => s.replace(/\s+/g, ' ').trim();

/** The parts of the workbench the journeys look at and click. */
export function workbench(page) {
  const sidebar = page.locator('.part.sidebar');
  const quick = page.locator('.quick-input-widget');
  return {
    sidebar,
    rows: sidebar.locator('.monaco-list-row'),
    quick,
    quickInput: quick.locator('.quick-input-box input'),
    quickRows: quick.locator('.quick-input-list .monaco-list-row'),
    focusedRow: quick.locator('.quick-input-list .monaco-list-row.focused'),
    dialog: page.locator('.monaco-dialog-box'),
    toasts: page.locator('.notifications-toasts .notification-toast'),
  };
}

/**
 * Answers the modal dialog: waits for it, checks that it says `want` (a
 * string, or each of several), clicks `button`, waits for it to go. Returns
 * what it said, on one line.
 */
export async function answerDialog(page, want, button) {
  const { dialog } = workbench(page);
  await dialog.first().waitFor({ timeout: 15_000 });
  const text = oneLine(await dialog.first().innerText());
  for (const w of Array.isArray(want) ? want : [want]) if (!text.includes(w)) throw new Error(`the dialog does not say "${w}": ${text}`);
  await dialog.getByRole('button', { name: button, exact: true }).click();
  await dialog.first().waitFor({ state: 'detached', timeout: 10_000 });
  return text;
}

/** In the open quick pick: types `typed` (unless undefined), waits until the focused row reads `row`, and takes it (Enter). */
export async function pickRow(page, row, typed) {
  const { quickInput, focusedRow } = workbench(page);
  await quickInput.waitFor({ timeout: 10_000 });
  if (typed !== undefined) await quickInput.fill(typed);
  await focusedRow.filter({ hasText: row }).first().waitFor({ timeout: 10_000 });
  await page.keyboard.press('Enter');
}

/** Runs Plone Backup: Restore… and waits for its list of the site `name`'s backups. */
export async function openRestore(driver, page, name) {
  await driver.runCommand('Plone Backup: Restore…');
  await workbench(page)
    .quick.locator('.quick-input-title', { hasText: `Restore ${name}` })
    .waitFor({ timeout: 15_000 });
}

/**
 * What the user sees now, for a failure's message: the rows of the side bar,
 * the notifications, the quick input (title, value, message, rows), the rows of
 * the panel (the Problems panel), the code action menu (Quick Fix), a context
 * menu and a modal dialog, each only when on screen.
 */
export async function seen(page) {
  const texts = async (sel) =>
    (
      await page
        .locator(sel)
        .allInnerTexts()
        .catch(() => [])
    )
      .map(oneLine)
      .filter(Boolean);
  const out = [];
  const rows = await texts('.part.sidebar .monaco-list-row');
  const welcome = await texts('.part.sidebar .welcome-view-content');
  out.push(`side bar rows:${rows.length ? `\n    ${rows.join('\n    ')}` : ' (none)'}`);
  if (welcome.length) out.push(`side bar welcome: ${welcome.join(' | ')}`);
  const toasts = await texts('.notifications-toasts .notification-toast');
  out.push(`notifications:${toasts.length ? `\n    ${toasts.join('\n    ')}` : ' (none)'}`);
  const quick = page.locator('.quick-input-widget');
  if (await quick.isVisible().catch(() => false)) {
    const title = await texts('.quick-input-widget .quick-input-title');
    const value = await page
      .locator('.quick-input-widget input')
      .first()
      .inputValue()
      .catch(() => '');
    const message = await texts('.quick-input-widget .quick-input-message');
    const items = await texts('.quick-input-widget .quick-input-list .monaco-list-row');
    const focused = await texts('.quick-input-widget .quick-input-list .monaco-list-row.focused');
    out.push(
      `quick input "${title.join(' ')}", typed "${value}"${message.length ? `, message "${message.join(' ')}"` : ''}` +
        (items.length ? `, focused "${focused.join(' ')}", rows:\n    ${items.join('\n    ')}` : ', no list'),
    );
  }
  // The panel (Problems, Output…) and the Quick Fix / code action menu, when open.
  const panel = await texts('.part.panel .monaco-list-row');
  if (panel.length) out.push(`panel rows:\n    ${panel.join('\n    ')}`);
  const actions = await texts('.action-widget .monaco-list-row');
  if (actions.length) out.push(`code actions:\n    ${actions.join('\n    ')}`);
  const menu = await texts('.context-view .monaco-menu .action-item');
  if (menu.length) out.push(`menu:\n    ${menu.join('\n    ')}`);
  const dialog = await texts('.monaco-dialog-box');
  if (dialog.length) out.push(`dialog: ${dialog.join(' | ')}`);
  return out.join('\n  ');
}

/**
 * Runs one step of a journey; a failure says which step, and what the user saw
 * at that moment (the runner adds a screenshot).
 */
export async function step(page, name, fn) {
  process.stderr.write(`[ui] ${name}\n`);
  try {
    return await fn();
  } catch (err) {
    const what = await seen(page).catch((e) => `(could not read the screen: ${e.message})`);
    const e = new Error(`${name}: ${err?.message ?? err}\n  The user saw:\n  ${what}`);
    e.stack = `${e.message}\n${(err?.stack ?? '').split('\n').slice(1).join('\n')}`;
    throw e;
  }
}

/** Polls `fn` until it returns a truthy value; else throws `message()` after `timeout` ms. */
export async function until(fn, message, timeout = 15_000, every = 200) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(typeof message === 'function' ? await message() : message);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Drags the side bar's edge to the right, so that the tree's descriptions show. */
export async function widenSidebar(page, by = 420) {
  const box = await page.locator('.part.sidebar').boundingBox();
  if (!box) return;
  await page.mouse.move(box.x + box.width - 1, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width + by, box.y + box.height / 2, { steps: 8 });
  await page.mouse.up();
}
