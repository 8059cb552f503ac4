// ESLint's recommended rules and typescript-eslint's, plus the few rules this
// project holds to. `npm run lint` runs it over src/, test/, bench/ and this file.
// The type-aware rule sets are left out: they take the run from ~17 s to ~42 s
// on two cores, and mostly flag tap's un-awaited `t.test()` calls.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'coverage/', '.tap/', 'node_modules/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      // verbatimModuleSyntax keeps type-only imports apart; the import says so.
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
      // The service logs through pino; only a command-line entry point prints.
      'no-console': 'error',
    },
  },
  {
    // The simulator's command line prints its usage, errors and where it listens.
    files: ['src/simulator/cli.ts'],
    rules: { 'no-console': 'off' },
  },
);
