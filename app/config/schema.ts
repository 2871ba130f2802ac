// The JSON Schema of a tsio config file, built from the specs so a new
// attribute or plugin needs no code here. Storage objects are discriminated by
// `plugin`, targets by `fabric`: each branch allows exactly its own keys
// (additionalProperties false everywhere, so typos are caught).

import { writeFileSync } from 'node:fs';
import { SIZE_PATTERN } from './size';
import { specs as loadedSpecs, type BackstoreSpec, type FabricSpec, type FieldSpec, type Specs } from './specs';
import { SIZE_KEYWORD } from './validation';

export type JsonSchema = Record<string, unknown>;

export const NAME_PATTERN = '^[A-Za-z0-9_.:-]+$';
/** LIO's vpd_unit_serial: printable ASCII without blanks, at most 254 bytes. */
export const UNIT_SERIAL_PATTERN = '^[!-~]+$';
export const MAX_LUN = 16383;
export const MAX_TPG_TAG = 65535;

export interface BuiltSchema {
  schema: JsonSchema;
  /** pattern -> what a matching value looks like, for error messages. */
  patternHints: Map<string, string>;
}

/** The config file's JSON Schema (draft-07), e.g. for editors: writeFileSync(f, JSON.stringify(buildConfigSchema())). */
export function buildConfigSchema(s: Specs = loadedSpecs()): JsonSchema {
  return buildConfigSchemaWithHints(s).schema;
}

/** Writes the schema as JSON, for docs and editors (yaml-language-server's `# yaml-language-server: $schema=`). */
export function writeConfigSchema(file: string, s: Specs = loadedSpecs()): void {
  writeFileSync(file, `${JSON.stringify(buildConfigSchema(s), null, 2)}\n`);
}

/** The storage object path a LUN names: /backstores/<plugin>/<name>. */
export function storageObjectPathPattern(s: Specs = loadedSpecs()): string {
  return `^/backstores/(${s.backstores.map((b) => escapeRegex(b.name)).join('|')})/[A-Za-z0-9_.:-]+$`;
}

/** Keys a storage object of this plugin may have. */
export function storageObjectKeys(b: BackstoreSpec): string[] {
  return ['name', 'plugin', 'wwn', 'compat', 'attributes', ...b.fields.map((f) => f.name)];
}

/** Keys a TPG of this fabric may have; which ones depends on its features. */
export function tpgKeys(f: FabricSpec): string[] {
  const keys = ['tag', 'enable', 'attributes'];
  if (f.tpgParameters.length > 0) keys.push('parameters');
  if (f.hasFeature('auth')) keys.push('auth');
  if (f.hasFeature('nps')) keys.push('portals');
  keys.push('luns');
  if (f.hasFeature('acls')) keys.push('node_acls');
  return [...keys, ...f.tpgFields.map((x) => x.name)];
}

export function buildConfigSchemaWithHints(s: Specs = loadedSpecs()): BuiltSchema {
  const hints = new Map<string, string>([
    [NAME_PATTERN, 'a valid name (letters, digits, _ . : -)'],
    [UNIT_SERIAL_PATTERN, 'a valid unit serial (printable ASCII, no blanks)'],
    [storageObjectPathPattern(s), `a storage object path (/backstores/<plugin>/<name>, plugin one of ${s.backstores.map((b) => b.name).join(', ')})`],
  ]);
  const field = (f: FieldSpec) => fieldSchema(f, hints);
  const object = (fields: readonly FieldSpec[], description: string, extra: Record<string, JsonSchema> = {}, required: string[] = []) =>
    objectSchema(fields, field, description, extra, required);

  const storageObject = {
    description: 'A storage object (backstore): where a LUN keeps its blocks.',
    type: 'object',
    required: ['plugin'],
    discriminator: { propertyName: 'plugin' },
    oneOf: s.backstores.map((b) =>
      object(b.fields, `${b.name}: ${b.doc}`, {
        name: { type: 'string', pattern: NAME_PATTERN, maxLength: 128, description: 'Name, unique among storage objects of this plugin.' },
        plugin: { const: b.name, description: 'Backstore plugin.' },
        wwn: { type: 'string', pattern: UNIT_SERIAL_PATTERN, maxLength: 254, description: 'Unit serial number (VPD page 80h); derived from the name when absent.' },
        compat: { enum: ['tsio', 'lio'], description: "Whose identity the unit presents: tsio's (default), or LIO's (vendor LIO-ORG, NAA 6001405 + serial, LIO's VPD 83h designators), so a disk moved from LIO keeps the identity initiators know it by. A targetcli saveconfig.json is imported with lio." },
        attributes: object(s.storageAttributes, s.storageDoc),
      }, ['name', 'plugin']),
    ),
  };

  const target = {
    description: 'A target: one WWN on one fabric, holding target portal groups.',
    type: 'object',
    required: ['fabric'],
    discriminator: { propertyName: 'fabric' },
    oneOf: s.fabrics.map((f) => {
      hints.set(f.wwnPattern, `a valid WWN (expected ${f.wwnExpect})`); // fabrics may share a pattern: no fabric name
      return {
        description: `${f.name}: ${f.doc}`,
        type: 'object',
        additionalProperties: false,
        required: ['fabric', 'wwn'],
        properties: {
          fabric: { const: f.name, description: 'Fabric module.' },
          wwn: { type: 'string', pattern: f.wwnPattern, description: `Target WWN: ${f.wwnExpect}.` },
          tpgs: { type: 'array', description: 'Target portal groups.', items: tpgSchema(f, object, storageObjectPathPattern(s)) },
        },
      };
    }),
  };

  const discoveryFabrics = s.fabrics.filter((f) => f.hasFeature('discovery_auth'));
  const fabricModule = {
    description: 'Fabric-wide settings (iSCSI discovery authentication).',
    type: 'object',
    required: ['name'],
    discriminator: { propertyName: 'name' },
    oneOf: discoveryFabrics.map((f) =>
      object([], `${f.name} fabric module`, {
        name: { const: f.name },
        discovery_auth: object(f.discoveryAuth, 'CHAP for SendTargets discovery sessions.'),
      }, ['name']),
    ),
  };

  const schema: JsonSchema = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'tsio configuration',
    description: 'Storage objects, then targets -> TPGs -> LUNs, ACLs and portals; shaped like targetcli saveconfig.json.',
    type: 'object',
    additionalProperties: false,
    // Top-level x-* keys are ignored (as in docker-compose): a place for YAML anchors.
    patternProperties: { '^x-': { description: 'Ignored; for YAML anchors shared below.' } },
    properties: {
      storage_objects: { type: 'array', items: storageObject, description: 'Storage objects, referred to by LUNs as /backstores/<plugin>/<name>.' },
      targets: { type: 'array', items: target, description: 'Targets of every fabric.' },
      ...(discoveryFabrics.length > 0 ? { fabric_modules: { type: 'array', items: fabricModule, description: 'Fabric-wide settings.' } } : {}),
      daemon: {
        type: 'object',
        additionalProperties: false,
        description: 'The daemon\'s own settings, read when tsiod starts.',
        properties: {
          io_threads: { oneOf: [{ type: 'integer', minimum: 1, maximum: 256 }, { const: 'auto' }], description: 'Event loops serving the data path (default auto: the number of cores, at most io_threads_max); 1: the main thread alone.' },
          io_threads_max: { type: 'integer', minimum: 1, maximum: 256, description: 'The most I/O threads auto gives (default 8).' },
          poll_max_ns: { type: 'integer', minimum: 0, maximum: 10_000_000, description: 'Longest busy-poll, in ns, of vhost rings and io_uring completions before an event loop sleeps (adaptive, as QEMU\'s iothread poll-max-ns); 0 (default): never poll. tsiod --poll-max-ns overrides it.' },
        },
      },
    },
  };
  return { schema, patternHints: hints };
}

type ObjectBuilder = (fields: readonly FieldSpec[], description: string, extra?: Record<string, JsonSchema>, required?: string[]) => JsonSchema;

function tpgSchema(f: FabricSpec, object: ObjectBuilder, soPathPattern: string): JsonSchema {
  const index = (what: string) => ({ type: 'integer', minimum: 0, maximum: MAX_LUN, description: what });
  const lun = {
    type: 'object',
    additionalProperties: false,
    required: ['index', 'storage_object'],
    properties: {
      index: index('LUN number.'),
      storage_object: { type: 'string', pattern: soPathPattern, description: 'The storage object served: /backstores/<plugin>/<name>.' },
      alias: { type: 'string', pattern: NAME_PATTERN, description: 'Name of the LUN link (LIO lun alias).' },
    },
  };
  const mappedLun = {
    type: 'object',
    additionalProperties: false,
    required: ['index', 'tpg_lun'],
    properties: {
      index: index('LUN number the initiator sees.'),
      tpg_lun: index('The TPG LUN it reaches.'),
      write_protect: { type: 'boolean', default: false, description: 'The initiator may only read.' },
    },
  };
  const extra: Record<string, JsonSchema> = {
    tag: { type: 'integer', minimum: 1, maximum: MAX_TPG_TAG, description: 'TPG tag (tpgt).' },
    enable: { type: 'boolean', default: true, description: 'Serve this TPG.' },
    attributes: object(f.tpgAttributes, 'TPG attributes.'),
  };
  if (f.tpgParameters.length > 0) extra.parameters = object(f.tpgParameters, 'Login parameters offered.');
  if (f.hasFeature('auth')) extra.auth = object(f.auth, 'CHAP credentials for sessions without an ACL of their own.');
  if (f.hasFeature('nps')) extra.portals = { type: 'array', description: 'Network portals.', items: object(f.portal, 'A network portal: address and port.') };
  extra.luns = { type: 'array', description: 'LUNs: storage objects served by this TPG.', items: lun };
  if (f.hasFeature('acls')) {
    const aclExtra: Record<string, JsonSchema> = {
      node_wwn: { type: 'string', pattern: f.wwnPattern, description: `Initiator name: ${f.wwnExpect}.` },
      attributes: object(f.aclAttributes, 'ACL attributes.'),
      mapped_luns: { type: 'array', description: 'LUNs this initiator sees.', items: mappedLun },
    };
    if (f.hasFeature('auth') || f.hasFeature('acls_auth')) aclExtra.auth = object(f.auth, 'CHAP credentials of this initiator.');
    extra.node_acls = { type: 'array', description: 'Initiators allowed in, and what they see.', items: object([], 'A node ACL.', aclExtra, ['node_wwn']) };
  }
  return object(f.tpgFields, 'A target portal group.', extra, ['tag']);
}

function objectSchema(
  fields: readonly FieldSpec[],
  field: (f: FieldSpec) => JsonSchema,
  description: string,
  extra: Record<string, JsonSchema>,
  required: string[],
): JsonSchema {
  const properties: Record<string, JsonSchema> = { ...extra };
  for (const f of fields) properties[f.name] = field(f);
  const req = [...required, ...fields.filter((f) => f.required).map((f) => f.name)];
  return { description, type: 'object', additionalProperties: false, properties, ...(req.length > 0 ? { required: req } : {}) };
}

function fieldSchema(f: FieldSpec, hints: Map<string, string>): JsonSchema {
  const common: JsonSchema = { description: f.doc, ...(f.default !== undefined ? { default: f.default } : {}) };
  const range: JsonSchema = { ...(f.min !== undefined ? { minimum: f.min } : {}), ...(f.max !== undefined ? { maximum: f.max } : {}) };
  switch (f.type) {
    case 'bool':
      return { type: 'boolean', ...common };
    case 'int':
      return { type: 'integer', ...range, ...common };
    case 'enum':
      return { enum: [...(f.values ?? [])], ...common };
    case 'list': {
      const item = `(${(f.values ?? []).map((v) => escapeRegex(String(v))).join('|')})`;
      const pattern = `^${item}(,${item})*$`;
      hints.set(pattern, `a comma-separated list of ${(f.values ?? []).join(', ')}`);
      return { type: 'string', pattern, ...common };
    }
    case 'size':
      // Numbers are bytes; strings carry units. The keyword checks exactness and range.
      return {
        type: ['integer', 'string'],
        minimum: 0,
        pattern: SIZE_PATTERN,
        [SIZE_KEYWORD]: { ...(f.min !== undefined ? { min: f.min } : {}), ...(f.max !== undefined ? { max: f.max } : {}) },
        ...common,
      };
    case 'path':
      return { type: 'string', minLength: 1, ...common };
    case 'string':
      // A WWN pattern may already have a hint; keep it, so one pattern reads one way.
      if (f.pattern !== undefined && f.expect !== undefined && !hints.has(f.pattern)) hints.set(f.pattern, f.expect);
      return { type: 'string', ...(f.pattern !== undefined ? { pattern: f.pattern } : {}), ...common };
  }
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); // only syntax characters: ajv compiles with the u flag
}
