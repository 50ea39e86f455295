// Write the CLI reference (from the CLI's own help) into README.md between
// the cli-reference markers: npm run docs:cli
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { VERSION } from '../src/broker.ts';
import { cliReference, withReference } from '../src/cli/reference.ts';

const readme = resolve(import.meta.dirname, '../README.md');
writeFileSync(readme, withReference(readFileSync(readme, 'utf8'), cliReference(VERSION)));
console.log(`CLI reference written to ${readme}`);
