// Named paths (@NAME), kept in HOME/bookmarks.json across runs.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { didYouMean } from '../app/config/validation';

export class Bookmarks {
  private readonly file: string;
  /** Name -> path, in the order they were added (what `bookmarks show` lists). */
  readonly all: Record<string, string>;

  constructor(private readonly home: string) {
    this.file = join(home, 'bookmarks.json');
    let all: Record<string, string>;
    try {
      all = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch {
      all = {};
    }
    this.all = all;
  }

  get(name: string): string | undefined {
    return this.all[name];
  }

  has(name: string): boolean {
    return name in this.all;
  }

  names(): string[] {
    return Object.keys(this.all);
  }

  add(name: string, path: string): void {
    this.all[name] = path;
    this.save();
  }

  delete(name: string): void {
    delete this.all[name];
    this.save();
  }

  /** " (did you mean @X?)" for a mistyped name. */
  hint(name: string): string {
    const g = didYouMean(name, this.names());
    return g ? ` (did you mean @${g}?)` : '';
  }

  private save(): void {
    mkdirSync(this.home, { recursive: true, mode: 0o700 });
    writeFileSync(this.file, JSON.stringify(this.all, null, 2) + '\n', { mode: 0o600 });
  }
}
