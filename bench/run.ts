// npm run bench [-- NAME ...]: runs the named benchmark scenarios (default: all
// that need no extra tools). Each scenario is a module of bench/ exporting a
// Scenario; it prints its own table. Options after the names go to the scenarios.

import { engineScenario } from './engine';
import { iscsiScenario } from './iscsi';
import { vhostScenario } from './vhost';
import { vhostGuestScenario } from './vhost-guest';
import { rbdScenario } from './rbd';
import { tapeScenario } from './tape';
import { instructionsScenario } from './instructions';
import { fileScenario } from './file';
import { scalingScenario } from './scaling';
import type { Scenario } from './common';

const scenarios: Scenario[] = [engineScenario, iscsiScenario, vhostScenario, vhostGuestScenario, rbdScenario, tapeScenario, instructionsScenario, fileScenario, scalingScenario];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    console.log('usage: npm run bench -- [NAME ...] [--rounds N] [--seconds S]\n');
    for (const s of scenarios) console.log(`  ${s.name.padEnd(10)} ${s.description}`);
    return;
  }
  const names = args.filter((a, i) => !a.startsWith('--') && (i === 0 || !args[i - 1].startsWith('--')));
  const chosen = names.length === 0 ? scenarios.filter((s) => s.byDefault) : [...new Set(names.map(find))];
  const child = args.includes('--child');
  for (const s of chosen) {
    if (!child) console.log(`== ${s.name}: ${s.description}`);
    await s.run(args);
  }
}

function find(name: string): Scenario {
  // `engine:read10-4k` runs one case of a scenario; the scenario reads the suffix from argv itself.
  const base = name.split(':')[0];
  const s = scenarios.find((x) => x.name === base);
  if (!s) throw new Error(`no benchmark ${base}; have: ${scenarios.map((x) => x.name).join(', ')}`);
  return s;
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
