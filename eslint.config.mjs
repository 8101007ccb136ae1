// ESLint (flat config): typescript-eslint's recommended rules (not the
// type-checked set, to keep `npm run lint` fast) and the layer boundaries of
// ARCHITECTURE.md:
//   - src/engine never imports src/cli, src/extension or vscode;
//   - src/extension never imports src/cli (and src/cli never imports src/extension);
//   - src/cli and src/extension import the engine only through src/engine/index.ts
//     (`../engine`), never its folders or src/engine/internal.ts;
//   - tests may import anything.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const engineOnlyThroughIndex = {
  regex: String.raw`(^|/)engine/(?!index$)`,
  message: 'Import the engine only through its public API, src/engine/index.ts (`../engine`).',
};

export default tseslint.config(
  // bench-data/ holds generated sites (hundreds of thousands of blob files): never walked.
  { ignores: ['dist/**', 'out/**', 'node_modules/**', '.cache/**', '.vscode-test/**', '**/*.vsix', 'bench-data/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // Unused names are the compiler's (noUnusedLocals, noUnusedParameters): one report, not two.
      '@typescript-eslint/no-unused-vars': 'off',
      // `catch {}` and `() => {}` are how the code says "nothing to do"; an empty
      // block anywhere else still fails.
      'no-empty': ['error', { allowEmptyCatch: true }],
      '@typescript-eslint/no-empty-function': 'off',
      'max-lines-per-function': ['warn', { max: 80, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    files: ['src/engine/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'vscode', message: 'The engine is pure Node: it never imports vscode.' }],
          patterns: [{ regex: String.raw`(^|/)(cli|extension)(/|$)`, message: 'The engine never imports the CLI or the extension.' }],
        },
      ],
    },
  },
  {
    files: ['src/extension/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [{ regex: String.raw`(^|/)cli(/|$)`, message: 'The extension never imports the CLI.' }, engineOnlyThroughIndex],
        },
      ],
    },
  },
  {
    files: ['src/cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'vscode', message: 'The CLI runs outside VS Code: it never imports vscode.' }],
          patterns: [{ regex: String.raw`(^|/)extension(/|$)`, message: 'The CLI never imports the extension.' }, engineOnlyThroughIndex],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'test/**/*.mjs', 'test/**/*.js'],
    rules: {
      'no-restricted-imports': 'off',
      // A describe() callback is as long as its tests.
      'max-lines-per-function': 'off',
      // Tests match aligned CLI output, where a run of spaces is what is meant.
      'no-regex-spaces': 'off',
    },
  },
  {
    files: ['**/*.mjs', '**/*.js', '**/*.cjs'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        AbortController: 'readonly',
        performance: 'readonly',
        fetch: 'readonly',
        AbortSignal: 'readonly',
        TextDecoder: 'readonly',
        TextEncoder: 'readonly',
      },
    },
  },
  {
    // CommonJS helpers (a --require preload in the fault tests).
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { __dirname: 'readonly', __filename: 'readonly', require: 'readonly', module: 'writable', exports: 'writable' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
