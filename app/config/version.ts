// tsio's version: package.json's, beside specs/ in a checkout and in the
// installed package alike.

import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { findSpecsDir } from './specs';

let version: string | undefined;

export function tsioVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(join(dirname(findSpecsDir()), 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      version = 'unknown';
    }
  }
  return version;
}
