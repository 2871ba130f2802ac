// Runs libiscsi's conformance suite (iscsi-test-cu 1.19) against a tsiod: every
// suite of family ALL, each in its own process (a long single run of 1.19
// corrupts later CDBs after CompareAndWrite.InvalidDataOutSize), with two
// initiator names and a second path on [::1] for the multipath tests. The
// caller picks the backstores and login parameters (test/iscsi-conformance*).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { startTsiod } from './tsiod';

export const IQN = 'iqn.2026-11.org.tsio:conformance';

/** The RAM units the conformance runs serve (all thin: NoMedia and ReadOnly then see UNMAP refused, not unknown). */
export const RD_MCP_UNITS: string[] = [
  '{ name: thin, plugin: rd_mcp, size: 1GiB, attributes: { emulate_tpu: true, emulate_tpws: true } }',
  '{ name: removable, plugin: rd_mcp, size: 64MiB, attributes: { removable: true, emulate_tpu: true, emulate_tpws: true } }',
  '{ name: ro, plugin: rd_mcp, size: 64MiB, attributes: { readonly: true, emulate_tpu: true, emulate_tpws: true } }',
  '{ name: slow-sanitize, plugin: rd_mcp, size: 64MiB, attributes: { emulate_tpu: true, emulate_tpws: true, max_sanitize_rate: 4 } }',
  '{ name: thin-512e, plugin: rd_mcp, size: 64MiB, physical_block_size: 4096, attributes: { emulate_tpu: true, emulate_tpws: true } }',
];
const INITIATOR = 'iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test';
const SUITES = [
  'CompareAndWrite', 'ExtendedCopy', 'GetLBAStatus', 'Inquiry', 'Mandatory', 'ModeSense6', 'NoMedia', 'OrWrite',
  'Prefetch10', 'Prefetch16', 'PreventAllow', 'PrinReadKeys', 'PrinServiceactionRange', 'PrinReportCapabilities',
  'ProutRegister', 'ProutReserve', 'ProutClear', 'ProutPreempt', 'Read6', 'Read10', 'Read12', 'Read16',
  'ReadCapacity10', 'ReadCapacity16', 'ReadDefectData10', 'ReadDefectData12', 'ReadOnly', 'ReceiveCopyResults',
  'ReportSupportedOpcodes', 'Reserve6', 'Sanitize', 'StartStopUnit', 'TestUnitReady', 'Unmap', 'Verify10', 'Verify12',
  'Verify16', 'Write10', 'Write12', 'Write16', 'WriteAtomic16', 'WriteSame10', 'WriteSame16', 'WriteVerify10',
  'WriteVerify12', 'WriteVerify16', 'iSCSIcmdsn', 'iSCSIdatasn', 'iSCSIResiduals', 'iSCSITMF', 'MultipathIO',
];
/**
 * Only MultipathIO gets the second path: with it, every other suite's
 * "second nexus" is that long-lived path, which carries the unit attentions
 * earlier resets left (PreventAllow.2ITNexuses then sees BUS DEVICE RESET);
 * without it they log in a fresh nexus as the second initiator name.
 */
const MULTIPATH = new Set(['MultipathIO']);
/**
 * Suites that need a medium that can be removed (LUN 1), a read-only unit (2), or more than one logical block
 * per physical block (4: 512-byte blocks in 4096-byte physical blocks): CompareAndWrite.InvalidDataOutSize and
 * WriteSame*.UnmapUnaligned/InvalidDataOutSize skip on a 1:1 unit. LUN 0 stays 1:1 because
 * GetLBAStatus.UnmapSingle (1.19) asks the status at LBA i+1 and wants the answer to start at i+LBPPB: right
 * only when LBPPB is 1. Sanitize overwrites its whole unit three times: 64 MiB there, not LUN 0's 1 GiB.
 */
const LUN_OF: Record<string, number> = {
  PreventAllow: 1, StartStopUnit: 1, NoMedia: 1, ReadOnly: 2, CompareAndWrite: 4, WriteSame10: 4, WriteSame16: 4, Sanitize: 4,
};
/**
 * Tests run alone, each on its own LUN; their suite runs without them.
 * Sanitize.Reset sends a SANITIZE OVERWRITE, sleeps 3 s, expects it still
 * running, resets and logs out and in, expects it STILL running, then polls
 * TEST UNIT READY every 60 s until it is done. Unbounded, the overwrite of a
 * small LUN ends within milliseconds, so LUN 3 has max_sanitize_rate: its
 * 64 MiB at 4 MiB/s take 16 s, well past the test's ~5 s window and well
 * within its first 60 s poll. The other Sanitize tests overwrite 3 times and
 * stay on an unbounded LUN, so they take no longer than the medium needs.
 */
const ALONE: Record<string, number> = { 'Sanitize.Reset': 3 };

/**
 * Why the tests that skip do (CUnit "[SKIPPED]"); not asserted, kept so a new skip stands out.
 * A test that logs one skipped step counts as skipped, even when the rest of it passed.
 */
export const SKIPPED_BECAUSE: Record<string, string> = {
  // We do not encrypt what we store, so there is no key to destroy: claiming CRYPTOGRAPHIC ERASE would be a
  // false promise that data is unrecoverable. Readonly and Reservations pass their OVERWRITE and BLOCK ERASE steps.
  'Sanitize.CryptoErase': 'no CRYPTOGRAPHIC ERASE: tsio does not encrypt the medium',
  'Sanitize.Readonly': 'its CRYPTOGRAPHIC ERASE step (the rest passes)',
  'Sanitize.Reservations': 'its CRYPTOGRAPHIC ERASE step (the rest passes)',
  // WSNZ=1 as in LIO: a WRITE SAME of 0 blocks ("to the end of the medium": one CDB that wipes a LUN) is refused.
  // Allowing it would still skip unless MAXIMUM WRITE SAME LENGTH covered the whole LUN.
  'WriteSame10.ZeroBlocks': 'WSNZ=1 (as LIO): WRITE SAME with 0 blocks is refused',
  'WriteSame16.ZeroBlocks': 'WSNZ=1 (as LIO): WRITE SAME with 0 blocks is refused',
};

export type Outcome = 'pass' | 'skip' | 'fail';

/** Each test's outcome from CUnit's console output: failures list file:line, skips log [SKIPPED]. */
export function parseCunit(out: string, suite: string): Map<string, Outcome> {
  const r = new Map<string, Outcome>();
  const blocks = out.split(/\n\s*Test: /).slice(1);
  for (const b of blocks) {
    const name = `${suite}.${b.split(' ...')[0].trim()}`;
    if (/\n\s+\d+\. \S+\.c:\d+/.test(b)) r.set(name, 'fail');
    else if (b.includes('[SKIPPED]')) r.set(name, 'skip');
    else r.set(name, 'pass');
  }
  return r;
}

/** The tests of `ALL.<suite>` iscsi-test-cu lists, as `<suite>.<test>`. */
function testsOf(suite: string): string[] {
  const list = spawnSync('iscsi-test-cu', ['-l'], { encoding: 'utf8' }).stdout;
  const prefix = `ALL.${suite}.`;
  return list.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(prefix)).map((l) => l.slice(4));
}

/**
 * How the initiator logs in: one-way CHAP credentials, in the URL. (iscsi-test-cu 1.19 offers HeaderDigest
 * None,CRC32C whatever the URL asks: a TPG whose HeaderDigest is CRC32C gets it; it always offers DataDigest None.)
 */
interface Login {
  chap?: { userid: string; password: string };
}

/** Runs a suite, or one test (`<suite>.<test>`), leaving out the tests that run ALONE. */
function runSuite(suite: string, port: number, login: Login): Promise<string> {
  const lun = ALONE[suite] ?? LUN_OF[suite] ?? 0;
  let tests = `ALL.${suite}`;
  if (!suite.includes('.') && Object.keys(ALONE).some((t) => t.startsWith(`${suite}.`))) {
    tests = testsOf(suite).filter((t) => !(t in ALONE)).map((t) => `ALL.${t}`).join(',');
  }
  const cred = login.chap ? `${login.chap.userid}%${login.chap.password}@` : '';
  const url = (host: string) => `iscsi://${cred}${host}:${port}/${IQN}/${lun}`;
  return runTestCu(tests, MULTIPATH.has(suite) ? [url('127.0.0.1'), url('[::1]')] : [url('127.0.0.1')]);
}

/** Runs iscsi-test-cu -d -S on tests (ALL.<suite>[.<test>],...) against urls (a second one: the multipath path). */
export function runTestCu(tests: string, urls: string[]): Promise<string> {
  const args = ['-d', '-S', '-i', INITIATOR, '-I', `${INITIATOR}-2`, '-t', tests, ...urls];
  return new Promise((resolve, reject) => {
    const p = spawn('iscsi-test-cu', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    // A suite that hangs is a failure, not a stuck test run.
    const t = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('error', (e) => reject(new Error(`iscsi-test-cu not runnable (scripts/install-deps --test installs libiscsi-bin): ${e.message}`)));
    p.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

export interface ConformanceSetup extends Login {
  /**
   * The storage objects of LUNs 0-4 as YAML flow mappings with name and plugin (see LUN_OF, ALONE): a thin 1 GiB
   * unit; a removable one; a read-only one; a thin one with max_sanitize_rate 4 (64 MiB); a thin 64 MiB one with
   * 4096-byte physical blocks where the backstore can have them.
   */
  objects: string[];
  /** TPG login parameters (specs/fabrics/iscsi.yaml tpg_parameters) other than the defaults. */
  parameters?: Record<string, string | number>;
  /** TPG attributes other than the defaults (default_cmdsn_depth ...). */
  attributes?: Record<string, string | number>;
  /** Leave out the tests that run alone (ALONE: Sanitize.Reset takes over a minute). */
  skipAlone?: boolean;
  /** Why tests skip in this setup, beyond SKIPPED_BECAUSE (units that are not thin or not 512e). */
  skipped?: Record<string, string>;
}

export interface ConformanceResult {
  all: Map<string, Outcome>;
  count(o: Outcome): number;
  /** The failures, by test name. */
  failures: string[];
  seconds: number;
}

/** Starts tsiod with SETUP's units at LUNs 0-4, runs every suite of ALL against it, logs what failed and skipped. */
export async function runConformance(setup: ConformanceSetup): Promise<ConformanceResult> {
  assert.equal(spawnSync('iscsi-test-cu', ['-l'], { encoding: 'utf8' }).error, undefined, 'iscsi-test-cu missing: scripts/install-deps --test installs libiscsi-bin');
  const path = (o: string) => `/backstores/${/plugin: *([a-z_]+)/.exec(o)![1]}/${/name: *([\w-]+)/.exec(o)![1]}`;
  const flow = (o: Record<string, string | number>) => Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ');
  const auth = setup.chap ? `{ userid: ${setup.chap.userid}, password: ${setup.chap.password} }` : undefined;
  const d = await startTsiod((port) => `storage_objects:
${setup.objects.map((o) => `  - ${o}`).join('\n')}
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: ${auth !== undefined}, demo_mode_write_protect: false${setup.attributes ? `, ${flow(setup.attributes)}` : ''} }
        portals: [ { ip_address: 127.0.0.1, port: ${port} }, { ip_address: '::1', port: ${port} } ]
        luns:
${setup.objects.map((o, i) => `          - { index: ${i}, storage_object: ${path(o)} }`).join('\n')}
${setup.parameters ? `        parameters: { ${flow(setup.parameters)} }\n` : ''}${auth ? `        auth: ${auth}\n` : ''}        # Sanitize.Reset sleeps 60 s without reading its socket: with the default NOP-In timeouts (15 + 30 s) its
        # connection is dropped, and the session libiscsi logs in again reports POWER ON, costing a second minute.
        node_acls:
          - node_wwn: ${INITIATOR}
            attributes: { nopin_timeout: 60, nopin_response_timeout: 60 }
${auth ? `            auth: ${auth}\n` : ''}            mapped_luns: [ ${setup.objects.map((_, i) => `{ index: ${i}, tpg_lun: ${i} }`).join(', ')} ]
`);
  const all = new Map<string, Outcome>();
  const timings: [string, number][] = [];
  const started = Date.now();
  try {
    for (const suite of [...SUITES, ...(setup.skipAlone ? [] : Object.keys(ALONE))]) {
      const t0 = Date.now();
      const out = await runSuite(suite, d.port, setup);
      const r = parseCunit(out, suite.split('.')[0]);
      timings.push([suite, Date.now() - t0]);
      assert.ok(r.size > 0, `suite ${suite} ran no test:\n${out.slice(-2000)}`);
      for (const [k, v] of r) all.set(k, v);
      const failed = [...r].filter(([, v]) => v === 'fail').map(([k]) => k);
      if (failed.length) console.log(`${suite}: FAILED ${failed.join(' ')}`);
      if (failed.length && process.env.CONFORMANCE_LOG) console.log(out);
    }
  } finally {
    await d.stop();
  }
  const count = (o: Outcome) => [...all.values()].filter((v) => v === o).length;
  const seconds = (Date.now() - started) / 1000;
  const slow = timings.filter(([, ms]) => ms > 5000).map(([k, ms]) => `${k} ${(ms / 1000).toFixed(0)} s`);
  if (slow.length) console.log(`suites over 5 s: ${slow.join(', ')}`);
  const skipped = [...all].filter(([, v]) => v === 'skip').map(([k]) => k);
  const why = { ...SKIPPED_BECAUSE, ...setup.skipped };
  if (skipped.length) console.log(`skipped: ${skipped.map((k) => `${k} (${why[k] ?? 'NEW: say why in SKIPPED_BECAUSE'})`).join(', ')}`);
  console.log(`iscsi-test-cu: ${all.size} tests, ${count('pass')} passed, ${count('skip')} skipped, ${count('fail')} failed in ${seconds.toFixed(0)} s`);
  const failures = [...all].filter(([, v]) => v === 'fail').map(([k]) => k);
  return { all, count, failures, seconds };
}
