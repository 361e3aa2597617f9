#!/usr/bin/env node
/** Writes docs/reference/configuration.md from the configuration's schema and meanings. */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { configReference } from '../config/reference.js';

const file = fileURLToPath(new URL('../../docs/reference/configuration.md', import.meta.url));
await writeFile(file, configReference());
console.log(`wrote ${file}`);
