// Config loading: sizes, YAML locations, spec files, schema and sense checks,
// defaults. Error tests assert exact paths and line numbers: a message at the
// wrong line is a bug a user pays for.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv from 'ajv';
import { ATTRIBUTE_NAMES } from '../src/core/attributes';
import { ConfigError, DEFAULT_CONFIG_YAML, defaultConfigText, loadConfigFile, parseConfig, type TsioConfig } from '../app/config/config';
import { buildConfigSchema, writeConfigSchema } from '../app/config/schema';
import { formatSize, formatSizeHuman, parseSize, SizeError } from '../app/config/size';
import { dumpConfig } from '../app/config/dump';
import { ioThreadCount } from '../app/daemon/io-threads';
import { checkFieldValue, findField, findSpecsDir, loadSpecs, specs } from '../app/config/specs';
import { formatPath, parseYaml } from '../app/config/yaml';

const GiB = 1024 ** 3;

const ISSUE_EXAMPLE = `storage_objects:
  - { name: ram0, plugin: rd_mcp, size: 1GiB }
  - { name: disk0, plugin: fileio, dev: data/disk0.img, size: 4GiB, attributes: { emulate_tpu: true } }
targets:
  - fabric: iscsi
    wwn: iqn.2026-11.org.tsio:demo
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false }
        portals: [ { ip_address: 127.0.0.1, port: 3260 } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]
`;

/** The ConfigError text throws, as [line, path, message] triples. */
function errorsOf(text: string): { line: number; path: string; message: string }[] {
  try {
    parseConfig(text, 'test.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e.errors.map(({ line, path, message }) => ({ line, path, message }));
  }
  assert.fail('expected a ConfigError');
}

function only<T>(list: T[]): T {
  assert.equal(list.length, 1, `expected exactly one error, got ${JSON.stringify(list, null, 1)}`);
  return list[0];
}

// --- sizes ---------------------------------------------------------------

test('parseSize: bytes, binary units in every spelling, exact fractions', () => {
  assert.equal(parseSize(512), 512);
  assert.equal(parseSize('512'), 512);
  assert.equal(parseSize('512B'), 512);
  for (const s of ['4k', '4K', '4KiB', '4 KiB']) assert.equal(parseSize(s), 4096, s);
  assert.equal(parseSize('1M'), 1024 ** 2);
  assert.equal(parseSize('1MiB'), 1024 ** 2);
  assert.equal(parseSize('1g'), GiB);
  assert.equal(parseSize('1GiB'), GiB);
  assert.equal(parseSize('2T'), 2 * 1024 ** 4);
  assert.equal(parseSize('1TiB'), 1024 ** 4);
  assert.equal(parseSize('1P'), 1024 ** 5);
  assert.equal(parseSize('1.5GiB'), 1.5 * GiB);
  assert.equal(parseSize('0.5k'), 512);
  assert.equal(parseSize(' 8M '), 8 * 1024 ** 2);
});

test('parseSize: refuses fractions of a byte, negatives, SI units and garbage', () => {
  const refused: [number | string, RegExp][] = [
    ['1.1k', /not a whole number of bytes/],
    ['0.3', /not a whole number of bytes/],
    [1.5, /not a whole number of bytes/],
    [-1, /negative/],
    ['-4k', /cannot be negative/],
    ['4 GB', /^size '4 GB' is not a size: 'GB' is ambiguous/],
    ['4kB', /ambiguous/],
    ['4x', /unknown unit 'x'/],
    ['4b', /unknown unit 'b'/],
    ['lots', /is not a size/],
    ['', /is not a size/],
    ['1e3', /is not a size/],
    ['99999P', /too large/],
    [Number.POSITIVE_INFINITY, /not a whole number/],
  ];
  for (const [input, why] of refused) assert.throws(() => parseSize(input), (e: unknown) => e instanceof SizeError && why.test(e.message), String(input));
});

test('formatSize is exact and round-trips; formatSizeHuman rounds', () => {
  assert.equal(formatSize(1073741824), '1GiB');
  assert.equal(formatSize(4096), '4KiB');
  assert.equal(formatSize(1536), '1536B');
  assert.equal(formatSize(0), '0B');
  assert.equal(formatSize(3 * 1024 ** 5), '3PiB');
  assert.equal(formatSize(1024 ** 5 * 7 + 1024 ** 4), '7169TiB');
  for (const n of [1, 512, 1536, 4096, 1.5 * GiB, 7 * 1024 ** 4 + 512]) assert.equal(parseSize(formatSize(n)), n);
  assert.equal(formatSizeHuman(1.5 * GiB), '1.5GiB');
  assert.equal(formatSizeHuman(100), '100B');
  assert.throws(() => formatSize(-1), SizeError);
});

// --- YAML locations -----------------------------------------------------

test('parseYaml locates block, flow and nested nodes; missing paths fall back to the nearest ancestor', () => {
  const y = parseYaml(
    [
      '# leading comment', //                          1
      'storage_objects:', //                           2
      '  - { name: ram0, plugin: rd_mcp, size: 1GiB }', // 3
      '  - { name: disk0, plugin: fileio,', //         4
      '      dev: data/disk0.img, attributes: { emulate_tpu: true } }', // 5
      'targets:', //                                   6
      '  - fabric: iscsi', //                          7
      '    tpgs:', //                                  8
      '    - tag: 1', //                               9
      '      attributes:', //                         10
      '        # comment', //                         11
      '        generate_node_acls: true', //          12
      '      luns: [ { index: 0 },', //               13
      '              { index: 1 } ]', //              14
      '      list:', //                               15
      '        -', //                                 16
      '        - x', //                               17
    ].join('\n'),
    'loc.yaml',
  );
  const at = (...path: (string | number)[]) => y.locate(path);
  assert.deepEqual(at(), { line: 2, column: 1 });
  assert.deepEqual(at('storage_objects', 0), { line: 3, column: 5 });
  assert.deepEqual(at('storage_objects', 0, 'size'), { line: 3, column: 35 });
  assert.deepEqual(at('storage_objects', 1, 'dev'), { line: 5, column: 7 });
  assert.deepEqual(at('storage_objects', 1, 'attributes', 'emulate_tpu'), { line: 5, column: 42 });
  assert.equal(at('targets', 0, 'tpgs', 0).line, 9);
  assert.equal(at('targets', 0, 'tpgs', 0, 'attributes', 'generate_node_acls').line, 12);
  assert.equal(at('targets', 0, 'tpgs', 0, 'luns', 1, 'index').line, 14);
  assert.equal(at('targets', 0, 'tpgs', 0, 'list', 1).line, 17, 'an empty item does not shift later items');
  assert.equal(at('targets', 0, 'tpgs', 0, 'luns', 1, 'nope').line, 14, 'falls back to the parent');
  assert.equal(at('targets', 5, 'x').line, 6, 'falls back to the nearest ancestor');
});

test('formatPath writes indexes in brackets and quotes odd keys', () => {
  assert.equal(formatPath(['targets', 0, 'tpgs', 1, 'luns', 2, 'storage_object']), 'targets[0].tpgs[1].luns[2].storage_object');
  assert.equal(formatPath(['attributes', 'a b']), 'attributes["a b"]');
  assert.equal(formatPath([]), '');
});

test('a YAML syntax error is a ConfigError naming its line', () => {
  const text = ['storage_objects:', '  - name: ram0', '    plugin: rd_mcp', '   size: 1GiB', 'targets: []'].join('\n');
  const e = only(errorsOf(text));
  assert.equal(e.line, 4);
  assert.equal(e.path, '');
  assert.match(e.message, /^YAML syntax error: bad indentation/);
  assert.throws(() => parseConfig(text, 'cfg.yaml'), (err: unknown) => err instanceof ConfigError && /^cfg\.yaml:4: YAML syntax error/.test(err.message));
});

test('an unclosed flow mapping and a duplicate key are syntax errors with lines', () => {
  const dup = only(errorsOf(['storage_objects: []', 'targets: []', 'storage_objects: []'].join('\n')));
  assert.equal(dup.line, 3);
  assert.match(dup.message, /duplicated mapping key/);
  const unclosed = only(errorsOf(['storage_objects:', '  - { name: ram0, plugin: rd_mcp', 'targets: []'].join('\n')));
  assert.match(unclosed.message, /YAML syntax error/);
  assert.ok(unclosed.line >= 2, `line ${unclosed.line}`);
});

// --- the examples -------------------------------------------------------

test("the issue's example config parses, normalized", () => {
  const cfg = parseConfig(ISSUE_EXAMPLE, 'issue.yaml');
  assert.equal(cfg.source, 'issue.yaml');
  assert.equal(cfg.storage_objects.length, 2);
  const [ram0, disk0] = cfg.storage_objects;
  assert.equal(ram0.plugin, 'rd_mcp');
  assert.equal(ram0.size, GiB);
  assert.equal(ram0.block_size, 512);
  assert.equal(ram0.nullio, false);
  assert.equal(disk0.plugin, 'fileio');
  assert.equal(disk0.dev, 'data/disk0.img');
  assert.equal(disk0.size, 4 * GiB);
  assert.equal(disk0.attributes.emulate_tpu, true);
  assert.equal(disk0.write_back, true);
  assert.equal(disk0.attributes.emulate_write_cache, true, 'fileio write_back defaults to true and sets emulate_write_cache');
  assert.equal(ram0.attributes.emulate_write_cache, false);
  const t = cfg.targets[0];
  assert.equal(t.fabric, 'iscsi');
  assert.equal(t.wwn, 'iqn.2026-11.org.tsio:demo');
  const tpg = t.tpgs[0];
  assert.equal(tpg.tag, 1);
  assert.equal(tpg.enable, true);
  assert.equal(tpg.attributes.generate_node_acls, true);
  assert.equal(tpg.attributes.authentication, false);
  assert.deepEqual(tpg.portals, [{ ip_address: '127.0.0.1', port: 3260 }]);
  assert.deepEqual(tpg.luns, [{ index: 0, storage_object: '/backstores/rd_mcp/ram0', plugin: 'rd_mcp', storage_object_name: 'ram0' }]);
  assert.deepEqual(tpg.node_acls, []);
  assert.deepEqual(cfg.fabric_modules, []);
});

test('the default config parses: two RAM disks over iSCSI, vhost and loopback', () => {
  assert.equal(DEFAULT_CONFIG_YAML, defaultConfigText());
  assert.equal(DEFAULT_CONFIG_YAML, readFileSync(join(findSpecsDir(), 'default.yaml'), 'utf8'));
  const cfg = parseConfig(DEFAULT_CONFIG_YAML, '<default>');
  assert.deepEqual(cfg.storage_objects.map((so) => [so.plugin, so.name, so.size, so.attributes.emulate_tpu, so.attributes.emulate_tpws]), [
    ['rd_mcp', 'ram0', GiB, true, true],
    ['rd_mcp', 'ram1', GiB, true, true],
  ]);
  assert.deepEqual(cfg.targets.map((t) => [t.fabric, t.wwn]), [
    ['iscsi', 'iqn.2026-11.org.tsio:default'],
    ['vhost', 'naa.5001405000000001'],
    ['loopback', 'naa.5001405000000002'],
  ]);
  const [iscsi, vhost, loopback] = cfg.targets.map((t) => t.tpgs[0]);
  assert.equal(iscsi.attributes.generate_node_acls, true);
  assert.equal(iscsi.attributes.authentication, false);
  assert.equal(iscsi.attributes.demo_mode_write_protect, false);
  assert.deepEqual(iscsi.portals, [{ ip_address: '127.0.0.1', port: 3260 }]);
  assert.match(vhost.socket ?? '', /^\/run\/tsio\/.+\.sock$/);
  for (const tpg of [iscsi, vhost, loopback]) {
    assert.deepEqual(tpg.luns.map((l) => [l.index, l.storage_object]), [
      [0, '/backstores/rd_mcp/ram0'],
      [1, '/backstores/rd_mcp/ram1'],
    ]);
  }
});

test('loadConfigFile reads a file and names it in errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-config-'));
  try {
    const good = join(dir, 'good.yaml');
    writeFileSync(good, ISSUE_EXAMPLE);
    assert.equal(loadConfigFile(good).storage_objects[0].name, 'ram0');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, ISSUE_EXAMPLE.replace('emulate_tpu: true', 'emulate_tpux: true'));
    assert.throws(() => loadConfigFile(bad), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${bad}:3: storage_objects[1].attributes.emulate_tpux: `));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an empty file is an empty configuration', () => {
  const cfg = parseConfig('# nothing yet\n', 'empty.yaml');
  assert.deepEqual([cfg.storage_objects, cfg.targets, cfg.fabric_modules], [[], [], []]);
});

test('top-level x-* keys are ignored, so they can hold YAML anchors; merge keys work', () => {
  const cfg = parseConfig(
    `x-thin: &thin { emulate_tpu: true, emulate_tpws: true }
storage_objects:
  - { name: a, plugin: rd_mcp, size: 1M, attributes: *thin }
  - { name: b, plugin: rd_mcp, size: 1M, attributes: { <<: *thin, is_nonrot: true } }
`,
    'anchors.yaml',
  );
  assert.deepEqual(cfg.storage_objects.map((so) => [so.attributes.emulate_tpws, so.attributes.is_nonrot]), [
    [true, false],
    [true, true],
  ]);
  assert.equal(only(errorsOf('y-thin: 1\n')).message, "unknown key 'y-thin' (expected storage_objects, targets, fabric_modules, daemon)");
});

// --- defaults -----------------------------------------------------------

test('defaults: storage attributes complete, TPG attributes, parameters, auth, ACLs and per-plugin fields applied', () => {
  const cfg = parseConfig(
    `storage_objects:
  - { name: r, plugin: rd_mcp, size: 8M }
  - { name: f, plugin: fileio, dev: /tmp/f.img }
  - { name: b, plugin: block, dev: /dev/sdz, readonly: true }
  - { name: b2, plugin: block, dev: /dev/sdy, attributes: { emulate_write_cache: true } }
  - { name: p, plugin: pscsi, dev: /dev/sg2 }
targets:
  - fabric: iscsi
    wwn: eui.02004567A425678D
    tpgs:
      - tag: 2
        portals: [ {} ]
        node_acls: [ { node_wwn: iqn.1994-05.com.redhat:client, mapped_luns: [ { index: 0, tpg_lun: 0 } ] } ]
        luns: [ { index: 0, storage_object: /backstores/block/b } ]
  - fabric: vhost
    wwn: naa.5001405000000009
    tpgs: [ { tag: 1, socket: /tmp/v.sock } ]
fabric_modules:
  - { name: iscsi }
`,
    'defaults.yaml',
  );
  const [r, f, b, b2, p] = cfg.storage_objects;
  const defaults = specs().storageAttributeDefaults();
  assert.deepEqual(Object.keys(r.attributes).sort(), [...ATTRIBUTE_NAMES].sort());
  assert.deepEqual(r.attributes, defaults);
  assert.equal(defaults.emulate_caw, true);
  assert.equal(defaults.emulate_tpu, false);
  assert.equal(defaults.max_unmap_lba_count, 1048576);
  assert.equal(defaults.queue_depth, 128);
  assert.equal(f.size, undefined, 'fileio size stays optional');
  assert.deepEqual([f.write_back, f.direct, f.block_size, f.attributes.emulate_write_cache], [true, false, 512, true]);
  assert.deepEqual([b.readonly, b.exclusive, b.write_back, b.attributes.readonly, b.attributes.emulate_write_cache], [true, true, false, true, false]);
  assert.equal(b.size, undefined);
  assert.deepEqual([b2.write_back, b2.attributes.emulate_write_cache], [true, true], 'an explicit attribute wins and write_back follows it');
  assert.deepEqual([p.dev, p.attributes.queue_depth], ['/dev/sg2', 128]);

  const tpg = cfg.targets[0].tpgs[0];
  assert.deepEqual(tpg.attributes, {
    authentication: true, login_timeout: 15, netif_timeout: 2, generate_node_acls: false, default_cmdsn_depth: 64,
    cache_dynamic_acls: false, demo_mode_write_protect: true, prod_mode_write_protect: false, demo_mode_discovery: true, default_erl: 0,
  });
  assert.equal(tpg.parameters?.HeaderDigest, 'CRC32C,None');
  assert.equal(tpg.parameters?.MaxRecvDataSegmentLength, 8192);
  assert.equal(tpg.parameters?.InitialR2T, 'Yes');
  assert.equal(tpg.parameters?.TargetAlias, '');
  assert.deepEqual(tpg.auth, { userid: '', password: '', mutual_userid: '', mutual_password: '' });
  assert.deepEqual(tpg.portals, [{ ip_address: '0.0.0.0', port: 3260 }]);
  const acl = tpg.node_acls[0];
  assert.equal(acl.attributes.nopin_timeout, 15);
  assert.equal(acl.attributes.nopin_response_timeout, 30);
  assert.deepEqual(acl.mapped_luns, [{ index: 0, tpg_lun: 0, write_protect: false }]);
  assert.equal(acl.auth?.userid, '');

  const vhost = cfg.targets[1].tpgs[0];
  assert.deepEqual(vhost.attributes, { generate_node_acls: true, demo_mode_write_protect: false });
  assert.equal(vhost.num_queues, undefined, "absent: as many as the front-end sets up");
  assert.equal(vhost.target, 0);
  assert.equal(vhost.parameters, undefined);
  assert.equal(vhost.auth, undefined);
  assert.deepEqual(cfg.fabric_modules, [{ name: 'iscsi', discovery_auth: { enable: false, userid: '', password: '', mutual_userid: '', mutual_password: '' } }]);
});

// --- errors -------------------------------------------------------------

test('an unknown attribute names its path, its line and the likely key', () => {
  const e = only(errorsOf(ISSUE_EXAMPLE.replace('emulate_tpu: true', 'emulate_tpux: true')));
  assert.equal(e.path, 'storage_objects[1].attributes.emulate_tpux');
  assert.equal(e.line, 3);
  assert.equal(e.message, "unknown key 'emulate_tpux' (did you mean emulate_tpu?)");
});

test('several errors in one file are all reported, in line order, with exact lines', () => {
  const text = [
    'storage_objects:', //                                              1
    '  - name: ram0', //                                                2
    '    plugin: rd_mcp', //                                            3
    '    size: 4 GB', //                                                4
    '    attributes:', //                                               5
    '      emulate_tpu: yes', //                                        6
    '      queue_depth: 0', //                                          7
    '  - { name: disk0, plugin: fileio, dev: d.img, block_size: 1024 }', // 8
    'targets:', //                                                      9
    '  - fabric: iscsi', //                                            10
    '    wwn: iqn.2026-11.org.tsio:demo', //                           11
    '    tpgs:', //                                                    12
    '      - tag: 1', //                                               13
    '        atributes: { generate_node_acls: true }', //              14
    '        luns:', //                                                15
    '          - { index: 0, storage_object: /backstores/rd_mcp/ram0 }', // 16
    '          - { index: 1, storage_object: /backstores/rd_mcp/ram9 }', // 17
  ].join('\n');
  assert.deepEqual(
    errorsOf(text).map((e) => [e.line, e.path]),
    [
      [4, 'storage_objects[0].size'],
      [6, 'storage_objects[0].attributes.emulate_tpu'],
      [7, 'storage_objects[0].attributes.queue_depth'],
      [8, 'storage_objects[1].block_size'],
      [14, 'targets[0].tpgs[0].atributes'],
      [17, 'targets[0].tpgs[0].luns[1].storage_object'],
    ],
  );
  const messages = errorsOf(text).map((e) => e.message);
  assert.match(messages[0], /^size '4 GB' is not a size/);
  assert.equal(messages[1], "must be true or false, not string 'yes'");
  assert.equal(messages[2], 'must be between 1 and 65535, not 0');
  assert.match(messages[3], /^must be one of 512, 4096/);
  assert.equal(messages[4], "unknown key 'atributes' (did you mean attributes?)");
  assert.match(messages[5], /does not exist/);
  // The message lists every error as FILE:LINE: path: message.
  assert.throws(() => parseConfig(text, 'multi.yaml'), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    const lines = e.message.split('\n');
    assert.equal(lines.length, 6);
    assert.equal(lines[4], "multi.yaml:14: targets[0].tpgs[0].atributes: unknown key 'atributes' (did you mean attributes?)");
    return true;
  });
});

test('a LUN pointing at a missing storage object is refused at the LUN', () => {
  const e = only(errorsOf(ISSUE_EXAMPLE.replace('/backstores/rd_mcp/ram0 }', '/backstores/rd_mcp/ram7 }')));
  assert.equal(e.path, 'targets[0].tpgs[0].luns[0].storage_object');
  assert.equal(e.line, 11);
  assert.equal(e.message, 'storage object /backstores/rd_mcp/ram7 does not exist (did you mean /backstores/rd_mcp/ram0?)');
  // Same name under another plugin is another object.
  const other = only(errorsOf(ISSUE_EXAMPLE.replace('/backstores/rd_mcp/ram0 }', '/backstores/fileio/ram0 }')));
  assert.match(other.message, /^storage object \/backstores\/fileio\/ram0 does not exist/);
  const malformed = only(errorsOf(ISSUE_EXAMPLE.replace('/backstores/rd_mcp/ram0 }', 'ram0 }')));
  assert.match(malformed.message, /^'ram0' is not a storage object path/);
});

test('bad WWNs: target WWN per fabric and ACL initiator names', () => {
  const iqn = only(errorsOf(ISSUE_EXAMPLE.replace('iqn.2026-11.org.tsio:demo', 'iqn.2026-13.org.tsio:demo')));
  assert.equal(iqn.path, 'targets[0].wwn');
  assert.equal(iqn.line, 6);
  assert.match(iqn.message, /^'iqn\.2026-13\.org\.tsio:demo' is not a valid WWN \(expected iqn\.YYYY-MM/);
  for (const good of ['eui.0123456789ABCDEF', 'naa.5001405000000001', 'naa.60014050000000010000000000000001', 'iqn.2003-01.org.linux-iscsi.host:sn.123']) {
    assert.doesNotThrow(() => parseConfig(ISSUE_EXAMPLE.replace('iqn.2026-11.org.tsio:demo', good), 'x.yaml'), good);
  }
  const vhost = `targets:
  - fabric: vhost
    wwn: iqn.2026-11.org.tsio:demo
    tpgs: [ { tag: 1, socket: /tmp/s } ]
`;
  const v = only(errorsOf(vhost));
  assert.deepEqual([v.line, v.path], [3, 'targets[0].wwn']);
  assert.match(v.message, /expected naa\./);
  const acl = ISSUE_EXAMPLE.replace(
    '        luns:',
    '        node_acls: [ { node_wwn: "iqn.x" } ]\n        luns:',
  );
  const a = only(errorsOf(acl));
  assert.deepEqual([a.line, a.path], [11, 'targets[0].tpgs[0].node_acls[0].node_wwn']);
  assert.match(a.message, /^'iqn\.x' is not a valid WWN/);
});

test('duplicates: storage object names per plugin, target WWNs, TPG tags, LUNs, portals, ACLs, mapped LUNs', () => {
  const text = [
    'storage_objects:', //                                               1
    '  - { name: ram0, plugin: rd_mcp, size: 1M }', //                    2
    '  - { name: ram0, plugin: rd_mcp, size: 2M }', //                    3
    '  - { name: ram0, plugin: fileio, dev: f.img }', //                  4 (other plugin: fine)
    'targets:', //                                                        5
    '  - fabric: iscsi', //                                               6
    '    wwn: iqn.2026-11.org.tsio:a', //                                 7
    '    tpgs:', //                                                       8
    '      - tag: 1', //                                                  9
    '        portals: [ { ip_address: 127.0.0.1 }, { ip_address: 127.0.0.1, port: 3260 } ]', // 10
    '        luns:', //                                                  11
    '          - { index: 0, storage_object: /backstores/rd_mcp/ram0 }', // 12
    '          - { index: 0, storage_object: /backstores/fileio/ram0 }', // 13
    '        node_acls:', //                                             14
    '          - node_wwn: iqn.2026-11.org.example:h1', //                15
    '            mapped_luns: [ { index: 0, tpg_lun: 0 }, { index: 0, tpg_lun: 3 } ]', // 16
    '          - node_wwn: iqn.2026-11.org.example:H1', //                17
    '      - tag: 1', //                                                 18
    '  - fabric: iscsi', //                                              19
    '    wwn: iqn.2026-11.org.tsio:a', //                                20
  ].join('\n');
  const errors = errorsOf(text);
  assert.deepEqual(
    errors.map((e) => [e.line, e.path]),
    [
      [3, 'storage_objects[1].name'],
      [10, 'targets[0].tpgs[0].portals[1]'],
      [13, 'targets[0].tpgs[0].luns[1].index'],
      [16, 'targets[0].tpgs[0].node_acls[0].mapped_luns[1].index'],
      [16, 'targets[0].tpgs[0].node_acls[0].mapped_luns[1].tpg_lun'],
      [17, 'targets[0].tpgs[0].node_acls[1].node_wwn'],
      [18, 'targets[0].tpgs[1].tag'],
      [20, 'targets[1].wwn'],
    ],
  );
  assert.equal(errors[0].message, "duplicate storage object name 'ram0' for plugin rd_mcp (first at line 2)");
  assert.equal(errors[1].message, 'duplicate portal 127.0.0.1:3260 (first at targets[0].tpgs[0].portals[0])');
  assert.equal(errors[4].message, 'the TPG has no LUN 3 (it has 0)');
  assert.equal(errors[6].message, 'duplicate TPG tag 1 (first at line 9)');
  assert.equal(errors[7].message, 'duplicate iscsi target iqn.2026-11.org.tsio:a (first at line 7)');
});

test('type errors: a string for a bool, a string for an int, a mapping for a list', () => {
  const text = [
    'storage_objects:', //                                                         1
    '  - { name: r, plugin: rd_mcp, size: 1M, nullio: "false" }', //                2
    'targets:', //                                                                  3
    '  - fabric: iscsi', //                                                         4
    '    wwn: iqn.2026-11.org.tsio:t', //                                           5
    '    tpgs:', //                                                                 6
    '      - tag: "1"', //                                                          7
    '        attributes: { authentication: 0, login_timeout: 15.5 }', //            8
    '        luns: { index: 0 }', //                                                9
  ].join('\n');
  assert.deepEqual(errorsOf(text), [
    { line: 2, path: 'storage_objects[0].nullio', message: "must be true or false, not string 'false'" },
    { line: 7, path: 'targets[0].tpgs[0].tag', message: "must be a whole number, not string '1'" },
    { line: 8, path: 'targets[0].tpgs[0].attributes.authentication', message: 'must be true or false, not number 0' },
    { line: 8, path: 'targets[0].tpgs[0].attributes.login_timeout', message: 'must be a whole number, not number 15.5' },
    { line: 9, path: 'targets[0].tpgs[0].luns', message: 'must be a list, not a mapping' },
  ]);
});

test('flow-style mappings spread over lines get the line of the offending key', () => {
  const text = [
    'storage_objects:', //                                        1
    '  - { name: ram0,', //                                       2
    '      plugin: rd_mcp,', //                                   3
    '      size: 1GiB,', //                                       4
    '      nullio: maybe,', //                                    5
    '      attributes: { emulate_tpu: true,', //                  6
    '                    emulate_tpws: nope } }', //              7
    '  - {name: r1, plugin: rd_mcp, size: 1GiB, colour: red}', // 8
  ].join('\n');
  assert.deepEqual(
    errorsOf(text).map((e) => [e.line, e.path]),
    [
      [5, 'storage_objects[0].nullio'],
      [7, 'storage_objects[0].attributes.emulate_tpws'],
      [8, 'storage_objects[1].colour'],
    ],
  );
});

test('missing required keys are reported at the mapping that lacks them', () => {
  const text = [
    'storage_objects:', //                                        1
    '  - name: ram0', //                                          2
    '    plugin: rd_mcp', //                                      3
    '  - { name: f, plugin: fileio }', //                         4
    'targets:', //                                                5
    '  - fabric: vhost', //                                       6
    '    wwn: naa.5001405000000001', //                           7
    '    tpgs:', //                                               8
    '      - tag: 1', //                                          9
    '        luns: []', //                                       10
    '  - { wwn: naa.5001405000000003 }', //                      11
  ].join('\n');
  const errors = errorsOf(text);
  assert.deepEqual(
    errors.map((e) => [e.line, e.path]),
    [
      [2, 'storage_objects[0]'],
      [4, 'storage_objects[1]'],
      [9, 'targets[0].tpgs[0]'],
      [11, 'targets[1]'],
    ],
  );
  assert.match(errors[0].message, /^missing required key 'size'/, 'rd_mcp without size');
  assert.match(errors[1].message, /^missing required key 'dev'/);
  assert.match(errors[2].message, /^missing required key 'socket': path of the vhost-user unix socket/, 'vhost tpg without socket');
  assert.equal(errors[3].message, "missing required key 'fabric'");
});

test('unknown plugin or fabric, and keys another variant has', () => {
  const text = [
    'storage_objects:', //                                        1
    '  - { name: r, plugin: ramdisc, size: 1M }', //               2
    '  - { name: r2, plugin: rd_mcp, size: 1M, dev: /x }', //      3
    'targets:', //                                                4
    '  - fabric: loopback', //                                    5
    '    wwn: naa.5001405000000002', //                           6
    '    tpgs: [ { tag: 1, portals: [] } ]', //                   7
    '  - { fabric: fc, wwn: naa.5001405000000003 }', //           8
  ].join('\n');
  assert.deepEqual(errorsOf(text), [
    { line: 2, path: 'storage_objects[0].plugin', message: "unknown plugin 'ramdisc' (expected block, changer, fileio, optical, pscsi, rbd, rd_mcp, tape)" },
    { line: 3, path: 'storage_objects[1].dev', message: "unknown key 'dev': rd_mcp storage objects have no 'dev' (block, changer, fileio, optical, pscsi, tape do)" },
    { line: 7, path: 'targets[0].tpgs[0].portals', message: "unknown key 'portals': loopback TPGs have no 'portals' (iscsi does)" },
    { line: 8, path: 'targets[1].fabric', message: "unknown fabric 'fc' (expected iscsi, loopback, vhost)" },
  ]);
});

test('sense checks: write_back contradicting its attribute, size vs block size, IPs, CHAP pairs, burst lengths, sockets', () => {
  const text = [
    'storage_objects:', //                                                                           1
    '  - { name: f, plugin: fileio, dev: f.img, write_back: false, attributes: { emulate_write_cache: true } }', // 2
    '  - { name: r, plugin: rd_mcp, size: 1000, block_size: 512 }', //                                3
    '  - { name: r4, plugin: rd_mcp, size: 6k, block_size: 4096 }', //                                4
    '  - { name: o, plugin: rd_mcp, size: 1M, attributes: { optimal_sectors: 20000 } }', //          5
    'targets:', //                                                                                    6
    '  - fabric: iscsi', //                                                                           7
    '    wwn: iqn.2026-11.org.tsio:t', //                                                             8
    '    tpgs:', //                                                                                   9
    '      - tag: 1', //                                                                             10
    '        auth: { userid: joe }', //                                                              11
    '        parameters: { FirstBurstLength: 524288 }', //                                          12
    '        portals: [ { ip_address: "::1" }, { ip_address: "[::1]" }, { ip_address: 300.1.1.1 } ]', // 13
    '  - fabric: vhost', //                                                                          14
    '    wwn: naa.5001405000000001', //                                                              15
    '    tpgs:', //                                                                                  16
    '      - { tag: 1, socket: /run/v.sock }', //                                                    17
    '      - { tag: 2, socket: /run/v.sock }', //                                                    18
    '      - { tag: 3, socket: /run/v.sock, target: 1, num_queues: 2 }', //                         19
    '      - { tag: 4, socket: /run/v.sock, target: 255 }', //                                       20
    '  - fabric: vhost', //                                                                          21
    '    wwn: naa.5001405000000002', //                                                              22
    '    tpgs: [ { tag: 1, socket: /run/v.sock, target: 7 } ]', //                                 23
  ].join('\n');
  assert.deepEqual(errorsOf(text), [
    { line: 2, path: 'storage_objects[0].write_back', message: "write_back: false contradicts attributes.emulate_write_cache: true (write_back only sets that attribute's default)" },
    { line: 3, path: 'storage_objects[1].size', message: 'size 1000 bytes is not a multiple of block_size 512' },
    { line: 4, path: 'storage_objects[2].size', message: 'size 6144 bytes is not a multiple of block_size 4096' },
    { line: 5, path: 'storage_objects[3].attributes.optimal_sectors', message: 'optimal_sectors 20000 is above hw_max_sectors 16384' },
    { line: 11, path: 'targets[0].tpgs[0].auth', message: 'userid and password must be set together' },
    { line: 12, path: 'targets[0].tpgs[0].parameters.FirstBurstLength', message: 'FirstBurstLength 524288 is above MaxBurstLength 262144 (RFC 7143 13.14)' },
    { line: 13, path: 'targets[0].tpgs[0].portals[1]', message: 'duplicate portal [::1]:3260 (first at targets[0].tpgs[0].portals[0])' },
    { line: 13, path: 'targets[0].tpgs[0].portals[2].ip_address', message: "'300.1.1.1' is not an IP address" },
    { line: 18, path: 'targets[1].tpgs[1].socket', message: 'duplicate virtio target 0 on socket /run/v.sock (first at line 17)' },
    { line: 19, path: 'targets[1].tpgs[2].num_queues', message: 'num_queues differs from the other TPG on socket /run/v.sock (line 17): one controller has one num_queues' },
    { line: 23, path: 'targets[2].tpgs[0].socket', message: 'vhost socket /run/v.sock belongs to another target (line 17)' },
  ]);
});

test('rd_mcp physical_block_size: 512 or 4096, never below block_size', () => {
  const cfg = parseConfig('storage_objects:\n  - { name: e, plugin: rd_mcp, size: 1M, physical_block_size: 4096 }\n', 'p.yaml');
  assert.equal(cfg.storage_objects[0].physical_block_size, 4096);
  assert.deepEqual(
    errorsOf('storage_objects:\n  - { name: a, plugin: rd_mcp, size: 1M, block_size: 4096, physical_block_size: 512 }\n  - { name: b, plugin: rd_mcp, size: 1M, physical_block_size: 1024 }\n'),
    [
      { line: 2, path: 'storage_objects[0].physical_block_size', message: 'physical_block_size 512 is below block_size 4096' },
      { line: 3, path: 'storage_objects[1].physical_block_size', message: 'must be one of 512, 4096, not number 1024' },
    ],
  );
});

test('size fields accept numbers and unit strings, and refuse the rest with the size parser\'s words', () => {
  const cfg = parseConfig('storage_objects:\n  - { name: a, plugin: rd_mcp, size: 1048576 }\n  - { name: b, plugin: rd_mcp, size: 1.5M }\n', 's.yaml');
  assert.deepEqual(cfg.storage_objects.map((so) => so.size), [1048576, 1.5 * 1024 * 1024]);
  assert.deepEqual(
    errorsOf('storage_objects:\n  - { name: a, plugin: rd_mcp, size: 1.1k }\n  - { name: b, plugin: rd_mcp, size: -512 }\n  - { name: c, plugin: rd_mcp, size: 0 }\n  - { name: d, plugin: rd_mcp, size: [1] }\n'),
    [
      { line: 2, path: 'storage_objects[0].size', message: "size '1.1k' is not a whole number of bytes" },
      { line: 3, path: 'storage_objects[1].size', message: 'must be at least 0, not -512' },
      { line: 4, path: 'storage_objects[2].size', message: 'size 0 is below the minimum of 1 bytes' },
      { line: 5, path: 'storage_objects[3].size', message: 'must be a whole number or a string, not a list' },
    ],
  );
});

// --- specs and schema ---------------------------------------------------

test('every spec file validates, and the accessors expose name, type, default, range and doc', () => {
  const s = loadSpecs(findSpecsDir());
  assert.deepEqual(s.storageAttributes.map((f) => f.name), [...ATTRIBUTE_NAMES]);
  assert.deepEqual(s.backstores.map((b) => b.name).sort(), ['block', 'changer', 'fileio', 'optical', 'pscsi', 'rbd', 'rd_mcp', 'tape']);
  assert.deepEqual(s.fabrics.map((f) => f.name).sort(), ['iscsi', 'loopback', 'vhost']);
  for (const f of [...s.storageAttributes, ...s.backstores.flatMap((b) => b.fields), ...s.fabrics.flatMap((x) => [...x.tpgAttributes, ...x.tpgParameters, ...x.aclAttributes, ...x.tpgFields])]) {
    assert.ok(f.doc.length > 0, `${f.name} has a doc line`);
    if (f.default !== undefined) assert.equal(checkFieldValue(f, f.default), undefined, `${f.name}'s default fits its type`);
  }
  const ua = s.storageAttribute('emulate_ua_intlck_ctrl');
  assert.deepEqual([ua?.type, ua?.default, ua?.min, ua?.max], ['int', 0, 0, 2]);
  const fileio = s.backstore('fileio');
  assert.deepEqual(fileio.fields.map((f) => f.name), ['dev', 'size', 'write_back', 'direct', 'block_size']);
  assert.deepEqual([findField(fileio.fields, 'dev')?.required, findField(fileio.fields, 'size')?.required], [true, false]);
  assert.equal(findField(fileio.fields, 'write_back')?.attribute, 'emulate_write_cache');
  assert.deepEqual(findField(fileio.fields, 'block_size')?.values, [512, 4096]);
  assert.equal(findField(s.backstore('rd_mcp').fields, 'size')?.required, true);
  assert.deepEqual([findField(s.backstore('block').fields, 'exclusive')?.default, findField(s.backstore('block').fields, 'write_back')?.default], [true, false]);
  const iscsi = s.fabric('iscsi');
  assert.deepEqual([...iscsi.features].sort(), ['acls', 'auth', 'discovery_auth', 'nps', 'tpgts']);
  assert.deepEqual([...s.fabric('vhost').features].sort(), ['acls', 'nexus', 'tpgts']);
  assert.deepEqual(s.fabric('loopback').features, ['nexus']);
  assert.deepEqual(iscsi.wwnFormats.map((w) => w.type), ['iqn', 'eui', 'naa']);
  assert.equal(iscsi.wwnFormat('iqn.2026-11.org.tsio:x')?.type, 'iqn');
  assert.equal(iscsi.wwnFormat('naa.5001405000000001')?.type, 'naa');
  assert.equal(s.fabric('vhost').wwnFormat('iqn.2026-11.org.tsio:x'), undefined);
  const mrdsl = findField(iscsi.tpgParameters, 'MaxRecvDataSegmentLength');
  assert.deepEqual([mrdsl?.type, mrdsl?.default, mrdsl?.min, mrdsl?.max], ['int', 8192, 512, 16777215]);
  assert.equal(findField(iscsi.portal, 'port')?.default, 3260);
  assert.deepEqual(iscsi.auth.map((f) => f.name), ['userid', 'password', 'mutual_userid', 'mutual_password']);
  assert.equal(findField(iscsi.aclAttributes, 'nopin_timeout')?.default, 15);
  assert.equal(findField(s.fabric('vhost').tpgFields, 'socket')?.required, true);
  assert.equal(findField(s.fabric('vhost').tpgFields, 'num_queues')?.type, 'int');
  assert.throws(() => s.backstore('nope'), /unknown backstore plugin 'nope'/);
  assert.equal(s.findFabric('fc'), undefined);
  assert.equal(specs(), specs(), 'loaded once');
});

test('a broken spec file is refused with its file, line and path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-specs-'));
  try {
    cpSync(findSpecsDir(), dir, { recursive: true });
    const fileio = join(dir, 'backstores', 'fileio.yaml');
    const text = readFileSync(fileio, 'utf8');
    const lines = text.split('\n');
    const directLine = lines.findIndex((l) => l === '  direct:') + 1;
    writeFileSync(fileio, text.replace('  direct:\n    type: bool\n    default: false', '  direct:\n    type: boolean\n    default: false'));
    assert.throws(() => loadSpecs(dir), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.source, fileio);
      const issue = only(e.errors.map(({ line, path, message }) => ({ line, path, message })));
      assert.deepEqual([issue.line, issue.path], [directLine + 1, 'fields.direct.type']);
      assert.match(issue.message, /^must be one of bool, int, string, enum, size, path, list/);
      return true;
    });
    // A default out of its own range is a sense error, also located.
    writeFileSync(fileio, text);
    const so = join(dir, 'storage-object.yaml');
    const soText = readFileSync(so, 'utf8');
    writeFileSync(so, soText.replace('    default: 128\n', '    default: 0\n'));
    assert.throws(() => loadSpecs(dir), (e: unknown) => e instanceof ConfigError && e.errors.length === 1 && e.errors[0].path === 'attributes.queue_depth.default' && /below the minimum/.test(e.errors[0].message));
    // Attributes must match the model's ATTRIBUTE_NAMES.
    writeFileSync(so, soText.replace('  removable:\n', '  removeable:\n'));
    assert.throws(() => loadSpecs(dir), (e: unknown) => e instanceof ConfigError && e.errors.some((x) => /'removeable' is not a StorageAttributes key/.test(x.message)) && e.errors.some((x) => /'removable' of the model/.test(x.message)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the config JSON Schema is valid draft-07, built from the specs, and can be written out', () => {
  const schema = buildConfigSchema();
  const ajv = new Ajv({ strict: false });
  assert.equal(ajv.validateSchema(schema), true, JSON.stringify(ajv.errors));
  const so = (schema.properties as Record<string, { items: { oneOf: { properties: Record<string, { const?: string; properties?: Record<string, unknown> }> }[] } }>).storage_objects;
  const fileio = so.items.oneOf.find((b) => b.properties.plugin.const === 'fileio');
  assert.ok(fileio);
  assert.deepEqual(Object.keys(fileio.properties.attributes.properties ?? {}), [...ATTRIBUTE_NAMES]);
  assert.deepEqual(fileio.properties.block_size, { enum: [512, 4096], description: 'Logical block size in bytes.', default: 512 });
  const dir = mkdtempSync(join(tmpdir(), 'tsio-schema-'));
  try {
    const file = join(dir, 'tsio.schema.json');
    writeConfigSchema(file);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), schema);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('parsed configs are plain data (JSON round trip loses nothing)', () => {
  const cfg: TsioConfig = parseConfig(DEFAULT_CONFIG_YAML, 'd');
  assert.deepEqual(JSON.parse(JSON.stringify(cfg)), cfg);
});

test('daemon: io_threads is 1 and up or auto (the cores, at most io_threads_max); it survives a save', () => {
  for (const bad of ['0', 'many']) assert.ok(errorsOf(`daemon: { io_threads: ${bad} }\n`).every((e) => e.path === 'daemon.io_threads'), bad);
  assert.ok(errorsOf('daemon: { io_threads: 0 }\n').length > 0);
  const cfg = parseConfig('daemon: { io_threads: auto, io_threads_max: 4 }\n', 't.yaml');
  assert.deepEqual(cfg.daemon, { io_threads: 'auto', io_threads_max: 4 });
  assert.equal(ioThreadCount(cfg.daemon, 16), 4);
  assert.equal(ioThreadCount(cfg.daemon, 2), 2);
  assert.equal(ioThreadCount(parseConfig('', 't.yaml').daemon, 16), 8, 'default: auto, the cores up to 8');
  assert.equal(ioThreadCount(parseConfig('', 't.yaml').daemon, 1), 1, 'one core: the main loop alone');
  assert.deepEqual(parseConfig(dumpConfig(cfg), 'saved.yaml').daemon, cfg.daemon);
});
