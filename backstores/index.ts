// Backstore plugins by name, as configs and the shell name them.

import type { BackstoreFactory } from './backstore';
import { createRdMcp } from './rd_mcp';
import { createFileio } from './fileio';
import { createBlock } from './block';
import { createPscsi } from './pscsi';

const plugins = new Map<string, BackstoreFactory>([
  ['rd_mcp', createRdMcp],
  ['fileio', createFileio],
  ['block', createBlock],
  ['pscsi', createPscsi],
]);

/** Adds a plugin (tests, embedding programs). */
export function registerBackstore(plugin: string, factory: BackstoreFactory): void {
  plugins.set(plugin, factory);
}

export function backstoreFactory(plugin: string): BackstoreFactory {
  const f = plugins.get(plugin);
  if (!f) throw new Error(`unknown backstore plugin '${plugin}' (known: ${[...plugins.keys()].join(', ')})`);
  return f;
}
