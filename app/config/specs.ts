// The spec files in specs/: one source for validation, defaults, shell help,
// tab completion and docs. Each file is YAML, checked against
// specs/spec.schema.json with ajv, then checked for sense (defaults of the
// right type and in range, storage attributes matching the model), and
// exposed as plain FieldSpec lists:
//
//   specs().storageAttributes                 every storage object attribute
//   specs().backstore('fileio').fields        a plugin's own fields
//   specs().fabric('iscsi').tpgAttributes     also tpgParameters, auth, aclAttributes, ...

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ATTRIBUTE_NAMES, type StorageAttributes } from '../../src/core/attributes';
import { ConfigError, sortIssues, type ConfigIssue } from './errors';
import { parseSize, SizeError } from './size';
import { createAjv, humanizeErrors } from './validation';
import { formatPath, parseYaml, type LocatedYaml, type YamlPath } from './yaml';

export type FieldType = 'bool' | 'int' | 'string' | 'enum' | 'size' | 'path' | 'list';
export type FieldValue = boolean | number | string;

/** One attribute, parameter or option. */
export interface FieldSpec {
  readonly name: string;
  readonly type: FieldType;
  /** Absent: required, or optional without a default. Size defaults are in bytes. */
  readonly default?: FieldValue;
  readonly required: boolean;
  /** int: value range; size: byte range. */
  readonly min?: number;
  readonly max?: number;
  /** enum: the allowed values; list: the allowed items of the comma-separated list. */
  readonly values?: readonly (string | number)[];
  /** string: a regular expression the value must match, and what a match looks like. */
  readonly pattern?: string;
  readonly expect?: string;
  /** Backstore fields: the storage attribute whose default this field sets (write_back -> emulate_write_cache). */
  readonly attribute?: keyof StorageAttributes;
  /** One line, for help and docs. */
  readonly doc: string;
}

export type BackstoreFeature = 'volatile' | 'persistent' | 'thin' | 'write_cache' | 'resizable' | 'direct_io' | 'passthrough';

export interface BackstoreSpec {
  readonly name: string;
  readonly doc: string;
  readonly features: readonly BackstoreFeature[];
  readonly fields: readonly FieldSpec[];
  readonly file: string;
}

export type FabricFeature = 'tpgts' | 'discovery_auth' | 'acls' | 'acls_auth' | 'auth' | 'nps' | 'nexus';

export interface WwnFormat {
  /** iqn, eui, naa, ... */
  readonly type: string;
  readonly pattern: string;
  readonly regex: RegExp;
  readonly example: string;
  /** Short form, e.g. "naa.<16 or 32 hex digits>". */
  readonly doc: string;
}

export interface FabricSpec {
  readonly name: string;
  readonly doc: string;
  readonly features: readonly FabricFeature[];
  hasFeature(feature: FabricFeature): boolean;
  readonly wwnFormats: readonly WwnFormat[];
  /** One anchored pattern accepting every format. */
  readonly wwnPattern: string;
  /** "iqn.YYYY-MM..., eui.<16 hex digits> or naa.<16 or 32 hex digits>". */
  readonly wwnExpect: string;
  /** The format a WWN has, if any. */
  wwnFormat(wwn: string): WwnFormat | undefined;
  /** TPG keys of the fabric itself, beside attributes (vhost: socket, num_queues, nexus). */
  readonly tpgFields: readonly FieldSpec[];
  readonly tpgAttributes: readonly FieldSpec[];
  /** Negotiated login parameters (iSCSI keys); empty for fabrics without. */
  readonly tpgParameters: readonly FieldSpec[];
  /** CHAP fields, for TPGs (feature auth) and node ACLs (acls_auth or auth). */
  readonly auth: readonly FieldSpec[];
  /** Fabric-wide discovery CHAP (feature discovery_auth), incl. `enable`. */
  readonly discoveryAuth: readonly FieldSpec[];
  readonly aclAttributes: readonly FieldSpec[];
  /** Portal fields and defaults (feature nps): ip_address, port. */
  readonly portal: readonly FieldSpec[];
  readonly file: string;
}

export interface Specs {
  /** The directory the specs were read from. */
  readonly dir: string;
  readonly storageDoc: string;
  readonly storageAttributes: readonly FieldSpec[];
  readonly backstores: readonly BackstoreSpec[];
  readonly fabrics: readonly FabricSpec[];
  /** Throws for an unknown plugin; findBackstore returns undefined instead. */
  backstore(name: string): BackstoreSpec;
  findBackstore(name: string): BackstoreSpec | undefined;
  fabric(name: string): FabricSpec;
  findFabric(name: string): FabricSpec | undefined;
  storageAttribute(name: string): FieldSpec | undefined;
  /** A complete StorageAttributes of the spec defaults. */
  storageAttributeDefaults(): StorageAttributes;
}

let cached: Specs | undefined;

/** The specs shipped with tsio (found beside the code), loaded and checked once. */
export function specs(): Specs {
  cached ??= loadSpecs(findSpecsDir());
  return cached;
}

/** specs/ of this package: the nearest ancestor of this module holding specs/spec.schema.json. */
export function findSpecsDir(from: string = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'specs');
    if (existsSync(join(candidate, 'spec.schema.json'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`tsio: no specs/ directory found above ${from}`);
  }
}

/** Every spec file of one directory; throws ConfigError (file, line, path) for the first bad file. */
export function loadSpecs(dir: string): Specs {
  const metaSchema = JSON.parse(readFileSync(join(dir, 'spec.schema.json'), 'utf8')) as object;
  const validate = createAjv().compile(metaSchema);
  const read = (file: string): { doc: LocatedYaml; data: Record<string, unknown> } => {
    const doc = parseYaml(readFileSync(file, 'utf8'), file);
    if (!validate(doc.value)) throw new ConfigError(file, sortIssues(humanizeErrors(validate.errors ?? [], doc, doc.value)));
    return { doc, data: doc.value as Record<string, unknown> };
  };
  const yamlFiles = (sub: string): string[] => {
    const d = join(dir, sub);
    return existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(d, f)) : [];
  };

  const storageFile = join(dir, 'storage-object.yaml');
  const storage = read(storageFile);
  const storageCheck = new SpecChecker(storageFile, storage.doc);
  const storageAttributes = storageCheck.fields(storage.data.attributes, ['attributes']);
  storageCheck.storageAttributesMatchModel(storageAttributes);
  storageCheck.done();

  const backstores = yamlFiles('backstores').map((file) => {
    const { doc, data } = read(file);
    const check = new SpecChecker(file, doc);
    check.nameMatchesFile(data.name as string);
    const fields = check.fields(data.fields, ['fields']);
    check.attributeLinks(fields, storageAttributes);
    check.done();
    return Object.freeze({ name: data.name as string, doc: data.doc as string, features: data.features as BackstoreFeature[], fields, file });
  });

  const fabrics = yamlFiles('fabrics').map((file) => {
    const { doc, data } = read(file);
    const check = new SpecChecker(file, doc);
    check.nameMatchesFile(data.name as string);
    const spec = makeFabric(file, data, check);
    check.fabricSections(spec, data);
    check.done();
    return spec;
  });

  const byName = <T extends { name: string }>(list: readonly T[]) => new Map(list.map((x) => [x.name, x]));
  const backstoreMap = byName(backstores);
  const fabricMap = byName(fabrics);
  const attributeMap = byName(storageAttributes);
  return Object.freeze({
    dir,
    storageDoc: storage.data.doc as string,
    storageAttributes,
    backstores,
    fabrics,
    backstore(name: string): BackstoreSpec {
      const b = backstoreMap.get(name);
      if (!b) throw new Error(`unknown backstore plugin '${name}' (known: ${[...backstoreMap.keys()].join(', ')})`);
      return b;
    },
    findBackstore: (name: string) => backstoreMap.get(name),
    fabric(name: string): FabricSpec {
      const f = fabricMap.get(name);
      if (!f) throw new Error(`unknown fabric '${name}' (known: ${[...fabricMap.keys()].join(', ')})`);
      return f;
    },
    findFabric: (name: string) => fabricMap.get(name),
    storageAttribute: (name: string) => attributeMap.get(name),
    storageAttributeDefaults: () => fieldDefaults(storageAttributes) as unknown as StorageAttributes,
  });
}

/** name -> default, for the fields that have one. */
export function fieldDefaults(fields: readonly FieldSpec[]): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  for (const f of fields) if (f.default !== undefined) out[f.name] = f.default;
  return out;
}

export function findField(fields: readonly FieldSpec[], name: string): FieldSpec | undefined {
  return fields.find((f) => f.name === name);
}

/** The problem with a value for a field, or undefined if it fits (type, range, values, pattern). */
export function checkFieldValue(f: FieldSpec, v: unknown): string | undefined {
  const range = (n: number, unit = '') => {
    if (f.min !== undefined && n < f.min) return `${n}${unit} is below the minimum ${f.min}${unit}`;
    if (f.max !== undefined && n > f.max) return `${n}${unit} is above the maximum ${f.max}${unit}`;
    return undefined;
  };
  switch (f.type) {
    case 'bool':
      return typeof v === 'boolean' ? undefined : 'must be true or false';
    case 'int':
      return typeof v === 'number' && Number.isInteger(v) ? range(v) : 'must be a whole number';
    case 'enum':
      return f.values?.includes(v as string | number) ? undefined : `must be one of ${f.values?.join(', ')}`;
    case 'list':
      return typeof v === 'string' && v.split(',').every((item) => f.values?.includes(item))
        ? undefined
        : `must be a comma-separated list of ${f.values?.join(', ')}`;
    case 'size':
      try {
        return typeof v === 'number' || typeof v === 'string' ? range(parseSize(v), ' bytes') : 'must be a size';
      } catch (e) {
        if (e instanceof SizeError) return e.message;
        throw e;
      }
    case 'path':
      return typeof v === 'string' && v !== '' ? undefined : 'must be a non-empty path';
    case 'string':
      if (typeof v !== 'string') return 'must be a string';
      return f.pattern !== undefined && !new RegExp(f.pattern, 'u').test(v) ? `does not match ${f.pattern}` : undefined;
  }
}

function makeFabric(file: string, data: Record<string, unknown>, check: SpecChecker): FabricSpec {
  const features = data.features as FabricFeature[];
  const wwnData = data.wwn as Record<string, { pattern: string; example: string; doc: string }>;
  const wwnFormats = Object.entries(wwnData).map(([type, w]) => {
    const regex = check.regex(w.pattern, ['wwn', type, 'pattern']) ?? /$^/;
    if (!regex.test(w.example)) check.error(['wwn', type, 'example'], `example '${w.example}' does not match the pattern`);
    return Object.freeze({ type, pattern: w.pattern, regex, example: w.example, doc: w.doc });
  });
  const docs = wwnFormats.map((w) => w.doc);
  const section = (key: string) => check.fields(data[key] ?? {}, [key]);
  return Object.freeze({
    name: data.name as string,
    doc: data.doc as string,
    features,
    hasFeature: (f: FabricFeature) => features.includes(f),
    wwnFormats,
    wwnPattern: wwnFormats.length === 1 ? wwnFormats[0].pattern : wwnFormats.map((w) => `(?:${w.pattern})`).join('|'),
    wwnExpect: docs.length === 1 ? docs[0] : `${docs.slice(0, -1).join(', ')} or ${docs[docs.length - 1]}`,
    wwnFormat: (wwn: string) => wwnFormats.find((w) => w.regex.test(wwn)),
    tpgFields: section('tpg_fields'),
    tpgAttributes: section('tpg_attributes'),
    tpgParameters: section('tpg_parameters'),
    auth: section('auth'),
    discoveryAuth: section('discovery_auth'),
    aclAttributes: section('acl_attributes'),
    portal: section('portal'),
    file,
  });
}

/** Sense checks the meta-schema cannot express; collects issues per file. */
class SpecChecker {
  private readonly issues: ConfigIssue[] = [];
  constructor(
    private readonly file: string,
    private readonly doc: LocatedYaml,
  ) {}

  error(path: YamlPath, message: string): void {
    this.issues.push({ path: formatPath(path), line: this.doc.locate(path).line, message });
  }

  done(): void {
    if (this.issues.length > 0) throw new ConfigError(this.file, sortIssues(this.issues));
  }

  regex(pattern: string, path: YamlPath): RegExp | undefined {
    try {
      return new RegExp(pattern, 'u');
    } catch (e) {
      this.error(path, `invalid regular expression: ${(e as Error).message}`);
      return undefined;
    }
  }

  nameMatchesFile(name: string): void {
    if (basename(this.file, '.yaml') !== name) this.error(['name'], `name '${name}' must match the file name ${basename(this.file)}`);
  }

  fields(map: unknown, at: YamlPath): FieldSpec[] {
    return Object.entries(map as Record<string, Record<string, unknown>>).map(([name, raw]) => this.field(name, raw, [...at, name]));
  }

  private field(name: string, raw: Record<string, unknown>, at: YamlPath): FieldSpec {
    const type = raw.type as FieldType;
    const f: FieldSpec = Object.freeze({ name, ...raw, required: raw.required === true } as FieldSpec);
    const hasValues = type === 'enum' || type === 'list';
    if (hasValues && f.values === undefined) this.error(at, `type ${type} needs values`);
    if (!hasValues && f.values !== undefined) this.error([...at, 'values'], `values only apply to enum and list fields`);
    if ((f.min !== undefined || f.max !== undefined) && type !== 'int' && type !== 'size') this.error(at, `min/max only apply to int and size fields`);
    if (f.min !== undefined && f.max !== undefined && f.min > f.max) this.error([...at, 'min'], `min ${f.min} is above max ${f.max}`);
    if (f.pattern !== undefined && type !== 'string') this.error([...at, 'pattern'], `pattern only applies to string fields`);
    if (f.pattern !== undefined) this.regex(f.pattern, [...at, 'pattern']);
    if (f.required && f.default !== undefined) this.error([...at, 'default'], `a required field has no default`);
    if (f.default !== undefined) {
      const problem = checkFieldValue(f, f.default);
      if (problem) this.error([...at, 'default'], `default ${JSON.stringify(f.default)}: ${problem}`);
    }
    // Size defaults are stored in bytes so users of the spec never parse.
    return type === 'size' && typeof f.default === 'string' ? Object.freeze({ ...f, default: parseSize(f.default) }) : f;
  }

  storageAttributesMatchModel(fields: readonly FieldSpec[]): void {
    const names = new Set(fields.map((f) => f.name));
    for (const n of ATTRIBUTE_NAMES) if (!names.has(n)) this.error(['attributes'], `attribute '${n}' of the model (src/core/attributes.ts) is missing`);
    const model = new Set<string>(ATTRIBUTE_NAMES);
    for (const f of fields) if (!model.has(f.name)) this.error(['attributes', f.name], `'${f.name}' is not a StorageAttributes key (src/core/attributes.ts)`);
  }

  attributeLinks(fields: readonly FieldSpec[], attributes: readonly FieldSpec[]): void {
    for (const f of fields) {
      if (f.attribute === undefined) continue;
      const a = attributes.find((x) => x.name === f.attribute);
      if (!a) this.error(['fields', f.name, 'attribute'], `no storage attribute '${f.attribute}'`);
      else if (a.type !== f.type) this.error(['fields', f.name, 'attribute'], `type ${f.type} differs from attribute ${a.name}'s type ${a.type}`);
    }
  }

  fabricSections(spec: FabricSpec, data: Record<string, unknown>): void {
    // [section, allowed by the features, which features, must be present when allowed]
    const needs: [string, boolean, string, boolean][] = [
      ['portal', spec.hasFeature('nps'), 'nps', true],
      ['auth', spec.hasFeature('auth') || spec.hasFeature('acls_auth'), 'auth or acls_auth', true],
      ['discovery_auth', spec.hasFeature('discovery_auth'), 'discovery_auth', true],
      ['acl_attributes', spec.hasFeature('acls'), 'acls', false],
    ];
    for (const [section, wanted, feature, mandatory] of needs) {
      if (wanted && mandatory && data[section] === undefined) this.error([], `feature ${feature} needs a '${section}' section`);
      if (!wanted && data[section] !== undefined) this.error([section], `'${section}' needs feature ${feature}`);
    }
  }
}
