// What the in-host suites share: the extension's id, running a command and
// reading its outcome, waiting for a condition, listing a folder.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import type { Outcome } from '../../../src/extension/commands';

/** publisher.name in package.json */
export const EXTENSION_ID = 'plone-backup.plone-backup';

export function exec<T = unknown>(id: string, args?: unknown): Promise<Outcome<T>> {
  return Promise.resolve(vscode.commands.executeCommand<Outcome<T>>(id, args));
}

/** The value of a command that must have succeeded. */
export function done<T>(o: Outcome<T>, what: string): T {
  assert.equal(o.status, 'done', `${what}: ${JSON.stringify(o)}`);
  return (o as { value: T }).value;
}

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Names in a folder, sorted; none when it does not exist. */
export const ls = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);
