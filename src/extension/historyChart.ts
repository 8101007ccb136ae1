/**
 * Draws the Backup History (historyModel.ts) as SVG, and the webview page
 * around it. Our own few lines of chart code, no library, nothing fetched:
 * the page's Content Security Policy allows no source but the extension's own
 * stylesheet and the one script carrying the page's nonce (media/history.js,
 * which only turns clicks on points into messages). Colours are classes whose
 * rules (media/history.css) use the theme's CSS variables (--vscode-*): the
 * SVG carries no style attribute, which the policy would block.
 *
 * Every text from disk (storage names, transaction descriptions, error
 * messages) is escaped. No vscode import: tested with node's test runner.
 */

import { humanBytes, plural, shortAge } from '../engine';
import type { HistoryData, HistoryPoint, HistoryRun, SectionHistory } from './historyModel';

export const WIDTH = 960;
const LEFT = 76;
const RIGHT = 76;
const PLOT = WIDTH - LEFT - RIGHT;
const LANE = 34;
const CHART = 100;
const RUNS = 30;
const AXIS = 26;

export interface ChartOptions {
  /** A moment as a person reads it (the extension: local time with the zone). */
  time?: (ms: number) => string;
  /** An axis tick's label; `day` when the ticks are a day or more apart. */
  tick?: (ms: number, day: boolean) => string;
}

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const isoTime = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');
const isoTick = (ms: number, day: boolean) => (day ? new Date(ms).toISOString().slice(0, 10) : new Date(ms).toISOString().slice(11, 16));

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY];

/** Tick times between from and to: at most about eight, on whole steps (local days for a day or more). */
export function ticks(from: number, to: number): { at: number[]; step: number } {
  const span = Math.max(1, to - from);
  const step = STEPS.find((s) => span / s <= 8) ?? STEPS.at(-1)!;
  const at: number[] = [];
  const start = new Date(from);
  let t: number;
  if (step >= DAY) {
    start.setHours(0, 0, 0, 0);
    t = start.getTime();
  } else {
    // Whole steps in local time (the zone's offset is whole minutes).
    const off = start.getTimezoneOffset() * MINUTE;
    t = Math.floor((from - off) / step) * step + off;
  }
  for (; t <= to; t = step >= DAY ? new Date(new Date(t).setDate(new Date(t).getDate() + Math.round(step / DAY))).getTime() : t + step) {
    if (t >= from) at.push(t);
  }
  return { at, step };
}

class Scale {
  constructor(
    private readonly from: number,
    private readonly to: number,
  ) {}
  x(t: number): number {
    return round(LEFT + ((t - this.from) / Math.max(1, this.to - this.from)) * PLOT);
  }
}

const round = (n: number) => Math.round(n * 10) / 10;

function attrs(a: Record<string, string | number | undefined>): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${esc(String(v))}"`)
    .join('');
}

/** What a point says: its tooltip and the details line the page shows when it is clicked. */
export function pointLabel(p: HistoryPoint, time: (ms: number) => string): string {
  const what = p.kind === 'backup' ? (p.full ? 'Full backup' : 'Incremental backup') : p.kind === 'snapshot' ? 'Snapshot' : 'Zip backup';
  return [
    `${what} of ${p.storage}, ${time(p.t)} (stamp ${p.stamp} UTC)`,
    `Data.fs ${humanBytes(p.size)}, ${plural(p.transactions, 'transaction')}${p.full ? '' : ` (${p.pieceTransactions} new)`}; ${humanBytes(p.diskSize)} on disk`,
    ...(p.lastDescription ? [`Last transaction: "${p.lastDescription}"`] : []),
    ...(p.pack ? ['Data.fs was packed before it (smaller than at the backup before)'] : []),
    ...(p.live ? ['The live Data.fs is this state'] : []),
    ...(p.problem ? [`Problem: ${p.problem}`] : []),
  ].join('\n');
}

export function runLabel(r: HistoryRun, time: (ms: number) => string): string {
  const who = `${r.via ?? 'cli'} on ${r.host}`;
  const head = r.drill ? `Restore drill ${r.outcome === 'ok' ? 'passed' : 'FAILED'}` : `${r.command} FAILED`;
  return [`${head}, ${time(r.t)} (${who})${r.stamp ? `, ${r.stamp}` : ''}`, ...(r.error ? [`${r.code ? `${r.code}: ` : ''}${r.error}`] : []), `plone-backup ${r.command}`].join(
    '\n',
  );
}

/** A point's mark: full backups big, incrementals small; snapshots squares, zips diamonds. */
function mark(p: HistoryPoint, x: number, y: number): string {
  const r = p.full ? 6 : 4;
  if (p.kind === 'snapshot') return `<rect x="${round(x - r)}" y="${round(y - r)}" width="${2 * r}" height="${2 * r}"/>`;
  if (p.kind === 'zip') return `<path d="M${x} ${y - r - 1}L${x + r + 1} ${y}L${x} ${y + r + 1}L${x - r - 1} ${y}Z"/>`;
  return `<circle cx="${x}" cy="${y}" r="${r}"/>`;
}

function storageBlock(root: string, s: SectionHistory['storages'][number], sc: Scale, top: number, time: (ms: number) => string): { svg: string; height: number } {
  const out: string[] = [];
  const laneY = top + 18 + LANE / 2;
  const chartTop = top + 18 + LANE + 6;
  const chartBottom = chartTop + CHART;
  out.push(`<text class="storage" x="${LEFT}" y="${top + 12}">${esc(s.storage)}</text>`);
  // Gaps first, under everything: the lane and the chart.
  for (const g of s.gaps) {
    const x1 = sc.x(g.from);
    const x2 = sc.x(g.to);
    out.push(
      `<rect class="gap${g.open ? ' open' : ''}" x="${x1}" y="${top + 18}" width="${round(Math.max(2, x2 - x1))}" height="${LANE + 6 + CHART}"><title>${esc(
        `${g.open ? 'No backup since' : 'No backup for'} ${shortAge(g.seconds)}${g.open ? '' : ` (${time(g.from)} to ${time(g.to)})`}`,
      )}</title></rect>`,
    );
  }
  out.push(`<line class="lane" x1="${LEFT}" x2="${LEFT + PLOT}" y1="${laneY}" y2="${laneY}"/>`);
  // Data.fs size (left scale) and transactions (right scale) over time.
  const pts = s.points;
  const maxSize = Math.max(1, ...pts.map((p) => p.size));
  const maxTx = Math.max(1, ...pts.map((p) => p.transactions));
  const ySize = (v: number) => round(chartBottom - (v / maxSize) * (CHART - 8));
  const yTx = (v: number) => round(chartBottom - (v / maxTx) * (CHART - 8));
  out.push(`<rect class="chart" x="${LEFT}" y="${chartTop}" width="${PLOT}" height="${CHART}"/>`);
  out.push(`<text class="axis size" x="${LEFT - 6}" y="${chartTop + 10}" text-anchor="end">${esc(humanBytes(maxSize))}</text>`);
  out.push(`<text class="axis size" x="${LEFT - 6}" y="${chartBottom}" text-anchor="end">Data.fs</text>`);
  out.push(`<text class="axis tx" x="${LEFT + PLOT + 6}" y="${chartTop + 10}">${esc(String(maxTx))}</text>`);
  out.push(`<text class="axis tx" x="${LEFT + PLOT + 6}" y="${chartBottom}">transactions</text>`);
  if (pts.length) {
    out.push(`<polyline class="line size" points="${pts.map((p) => `${sc.x(p.t)},${ySize(p.size)}`).join(' ')}"/>`);
    out.push(`<polyline class="line tx" points="${pts.map((p) => `${sc.x(p.t)},${yTx(p.transactions)}`).join(' ')}"/>`);
  }
  for (const p of pts) {
    const x = sc.x(p.t);
    const label = pointLabel(p, time);
    const data = { 'data-root': root, 'data-storage': p.storage, 'data-kind': p.kind, 'data-stamp': p.stamp, 'data-label': label };
    const cls = ['pt', p.kind, p.full ? 'full' : 'incremental', ...(p.problem ? ['problem'] : []), ...(p.live ? ['live'] : [])].join(' ');
    out.push(`<g class="${cls}"${attrs(data)} tabindex="0" role="button" aria-label="${esc(label.split('\n')[0]!)}"><title>${esc(label)}</title>${mark(p, x, laneY)}</g>`);
    if (p.pack) out.push(`<path class="pack" d="M${x - 5} ${laneY - 15}L${x + 5} ${laneY - 15}L${x} ${laneY - 8}Z"><title>${esc(`Packed before ${time(p.t)}`)}</title></path>`);
    out.push(`<circle class="dot size"${attrs(data)} cx="${x}" cy="${ySize(p.size)}" r="2.5"><title>${esc(label)}</title></circle>`);
  }
  if (!pts.length) out.push(`<text class="empty" x="${LEFT + 8}" y="${laneY + 4}">No backup of ${esc(s.storage)} yet</text>`);
  return { svg: out.join(''), height: 18 + LANE + 6 + CHART + 14 };
}

function runsLane(sec: SectionHistory, sc: Scale, top: number, time: (ms: number) => string): string {
  const y = top + RUNS / 2;
  const out = [`<text class="axis" x="${LEFT - 6}" y="${y + 4}" text-anchor="end">runs</text>`, `<line class="lane" x1="${LEFT}" x2="${LEFT + PLOT}" y1="${y}" y2="${y}"/>`];
  for (const r of sec.runs) {
    const x = sc.x(r.t);
    const cls = r.drill ? `run drill ${r.outcome}` : 'run failed';
    const shape = r.drill && r.outcome === 'ok' ? `<circle cx="${x}" cy="${y}" r="5"/>` : `<path d="M${x - 5} ${y - 5}L${x + 5} ${y + 5}M${x + 5} ${y - 5}L${x - 5} ${y + 5}"/>`;
    out.push(`<g class="${cls}" data-command="${esc(r.command)}" tabindex="0"><title>${esc(runLabel(r, time))}</title>${shape}</g>`);
  }
  return out.join('');
}

function axis(d: HistoryData, sc: Scale, top: number, tick: (ms: number, day: boolean) => string): string {
  const { at, step } = ticks(d.from, d.to);
  const out = [`<line class="axisline" x1="${LEFT}" x2="${LEFT + PLOT}" y1="${top}" y2="${top}"/>`];
  for (const t of at) {
    const x = sc.x(t);
    out.push(
      `<line class="tick" x1="${x}" x2="${x}" y1="${top}" y2="${top + 4}"/><text class="axis" x="${x}" y="${top + 16}" text-anchor="middle">${esc(tick(t, step >= DAY))}</text>`,
    );
  }
  const nx = sc.x(d.now);
  out.push(`<line class="now" x1="${nx}" x2="${nx}" y1="${top - 4}" y2="${top + 4}"/>`);
  return out.join('');
}

/** The history as one SVG drawing. */
export function historySvg(d: HistoryData, o: ChartOptions = {}): string {
  const time = o.time ?? isoTime;
  const sc = new Scale(d.from, d.to);
  const parts: string[] = [];
  let y = 4;
  for (const sec of d.sections) {
    if (d.sections.length > 1) {
      parts.push(`<text class="section" x="4" y="${y + 14}">${esc(sec.name)}</text>`);
      y += 22;
    }
    for (const s of sec.storages) {
      const b = storageBlock(sec.root, s, sc, y, time);
      parts.push(b.svg);
      y += b.height;
    }
    parts.push(runsLane(sec, sc, y, time));
    y += RUNS + 6;
  }
  parts.push(axis(d, sc, y, o.tick ?? isoTick));
  y += AXIS;
  return `<svg xmlns="http://www.w3.org/2000/svg" class="history" viewBox="0 0 ${WIDTH} ${y}" width="${WIDTH}" height="${y}" role="img" aria-label="Backup history">${parts.join('')}</svg>`;
}

/** What the gaps are measured against, in words. */
export function expectedText(sec: SectionHistory): string {
  const e = sec.expected;
  if (e.from === 'schedule') return `gaps: longer than the schedule (every ${shortAge(e.interval!)}) and half again`;
  if (e.from === 'median') return `gaps: longer than 3 × the median interval (${shortAge(e.interval!)})`;
  return 'gaps: too few backups to tell';
}

export interface PageOptions {
  cspSource: string;
  nonce: string;
  scriptUri: string;
  styleUri: string;
  /** Restore… is offered (a trusted workspace). */
  restore: boolean;
}

/** The page's Content Security Policy: nothing but the extension's stylesheet and the nonce'd script. */
export function csp(cspSource: string, nonce: string): string {
  return `default-src 'none'; img-src ${cspSource} data:; style-src ${cspSource}; font-src ${cspSource}; script-src 'nonce-${nonce}';`;
}

/** The webview's whole page. */
export function historyPage(d: HistoryData, page: PageOptions, o: ChartOptions = {}): string {
  const legend = [
    ['pt backup full', '<circle cx="8" cy="8" r="6"/>', 'full backup'],
    ['pt backup incremental', '<circle cx="8" cy="8" r="4"/>', 'incremental'],
    ['pt snapshot full', '<rect x="3" y="3" width="10" height="10"/>', 'snapshot'],
    ['pt zip full', '<path d="M8 1L15 8L8 15L1 8Z"/>', 'zip backup'],
    ['pack', '<path d="M3 4L13 4L8 11Z"/>', 'packed'],
    ['gap', '<rect x="1" y="2" width="14" height="12"/>', 'gap'],
    ['run failed', '<path d="M3 3L13 13M13 3L3 13"/>', 'failed run'],
    ['run drill ok', '<circle cx="8" cy="8" r="5"/>', 'drill passed'],
    ['line size', '<path d="M1 12L15 4"/>', 'Data.fs size'],
    ['line tx', '<path d="M1 12L15 4"/>', 'transactions'],
  ]
    .map(([cls, shape, text]) => `<span class="key"><svg viewBox="0 0 16 16" width="16" height="16"><g class="${cls}">${shape}</g></svg>${esc(text!)}</span>`)
    .join('');
  const notes = d.sections.map((s) => `<p class="note">${d.sections.length > 1 ? `${esc(s.name)}: ` : ''}${esc(expectedText(s))}</p>`).join('');
  const body = d.sections.length
    ? `<div class="legend">${legend}</div>${notes}<div class="chart-wrap">${historySvg(d, o)}</div>`
    : '<p class="note">No Plone deployment in this workspace.</p>';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp(page.cspSource, page.nonce).replace(/[&"<>]/g, (c) => esc(c))}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${esc(page.styleUri)}">
<title>Backup History</title>
</head>
<body>
<h1>Backup History</h1>
${body}
<div id="details" class="details" hidden>
<pre id="details-text"></pre>
<button id="reveal" type="button">Show in Backups View</button>
${page.restore ? '<button id="restore" type="button" class="secondary">Restore…</button>' : ''}
</div>
<script nonce="${esc(page.nonce)}" src="${esc(page.scriptUri)}"></script>
</body>
</html>`;
}
