import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'models/'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  // The page's script runs in the browser, as plain JavaScript.
  { files: ['public/**/*.js'], languageOptions: { globals: globals.browser } },
  // Build-time scripts run under Node, as plain JavaScript.
  { files: ['scripts/**/*.mjs'], languageOptions: { globals: globals.node } },
);
