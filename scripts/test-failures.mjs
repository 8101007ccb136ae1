// A node:test reporter that writes one line per failed test (file, name, first line of the error)
// to its destination. run-tests.mjs runs it beside the spec reporter and prints what it wrote at
// the very end, so the last lines of a long CI log say what failed instead of only "exit 1".
export default async function* failures(source) {
  for await (const event of source) {
    if (event.type !== 'test:fail') continue;
    const { name, file, details } = event.data;
    // A suite fails when a test in it does; its own line would only repeat the test's.
    if (details?.type === 'suite') continue;
    const err = details?.error;
    const cause = err?.cause ?? err;
    const message = String(cause?.message ?? cause ?? 'failed')
      .split('\n')[0]
      .slice(0, 300);
    yield `${file ?? '?'}: ${name}: ${message}\n`;
  }
}
