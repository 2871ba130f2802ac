#!/usr/bin/env node
// tcli: the interactive shell for tsiod. The management issue fills it in;
// until then it says so instead of pretending.
console.error('tcli: the management shell is not implemented yet; configure tsiod with --config FILE.yaml');
process.exit(2);
