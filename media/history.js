// The Backup History page's only script (src/extension/historyChart.ts draws
// the page; src/extension/history.ts serves it with a nonce). It turns a click
// (or Enter) on a generation's point into a message to the extension: "reveal"
// selects the generation in the Backups view; the details box below the chart
// then offers Restore…, which the extension runs as its confirmed Restore
// command. It never builds HTML from data: text goes in through textContent.
/* global acquireVsCodeApi, document, Element */
(function () {
  const vscode = acquireVsCodeApi();
  const details = document.getElementById('details');
  const text = document.getElementById('details-text');
  let selected;

  const generationOf = (el) => ({
    root: el.getAttribute('data-root'),
    storage: el.getAttribute('data-storage'),
    kind: el.getAttribute('data-kind'),
    stamp: el.getAttribute('data-stamp'),
  });

  /** The generation's point on the lane (a click may be on its dot on the size line). */
  const pointOf = (want) => Array.from(document.querySelectorAll('.pt')).find((x) => Object.entries(want).every(([k, v]) => x.getAttribute(`data-${k}`) === v));

  function show(pt) {
    if (selected) selected.classList.remove('selected');
    selected = pt;
    pt.classList.add('selected');
    text.textContent = pt.getAttribute('data-label') || '';
    details.hidden = false;
    // The page is drawn again when the backups change: the choice survives it.
    vscode.setState({ selected: generationOf(pt) });
  }

  function choose(el) {
    show(pointOf(generationOf(el)) || el);
    vscode.postMessage({ type: 'reveal', ...generationOf(el) });
  }

  const before = vscode.getState();
  const again = before && before.selected ? pointOf(before.selected) : undefined;
  if (again) show(again);

  document.addEventListener('click', (e) => {
    const el = e.target instanceof Element ? e.target.closest('[data-stamp]') : null;
    if (el) choose(el);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' && e.key !== ' ') return;
    const el = e.target instanceof Element ? e.target.closest('[data-stamp]') : null;
    if (el) {
      e.preventDefault();
      choose(el);
    }
  });
  document.getElementById('reveal').addEventListener('click', () => {
    if (selected) vscode.postMessage({ type: 'reveal', ...generationOf(selected) });
  });
  const restore = document.getElementById('restore');
  if (restore)
    restore.addEventListener('click', () => {
      if (selected) vscode.postMessage({ type: 'restore', ...generationOf(selected) });
    });
  vscode.postMessage({ type: 'ready' });
})();
