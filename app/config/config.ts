// The declarative configuration: YAML shaped like targetcli's saveconfig.json,
// checked against the JSON Schema built from the specs, then for sense
// (references, duplicates, formats), and returned typed and complete: sizes
// in bytes, every default applied. Every problem found is reported at once,
// each as FILE:LINE: path: message.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { ValidateFunction } from 'ajv';
import type { StorageAttributes } from '../../src/core/attributes';
import { ConfigError, sortIssues, type ConfigIssue } from './errors';
import { buildConfigSchemaWithHints, storageObjectKeys, storageObjectPathPattern, tpgKeys } from './schema';
import { parseSize } from './size';
import { fieldDefaults, findSpecsDir, specs, type FabricSpec, type FieldSpec, type FieldValue, type Specs } from './specs';
import { createAjv, didYouMean, humanizeErrors } from './validation';
import { formatPath, parseYaml, type LocatedYaml, type YamlPath } from './yaml';
import { groupId } from '../../native';

export { ConfigError, formatIssue, type ConfigIssue } from './errors';

export type BackstorePlugin = 'rd_mcp' | 'fileio' | 'block' | 'pscsi' | 'rbd' | 'tape' | 'changer' | 'optical';
export type FabricName = 'iscsi' | 'vhost' | 'loopback';
export type AttributeValue = FieldValue;

/** A storage object; which optional fields are present depends on the plugin (specs/backstores/<plugin>.yaml). */
export interface StorageObjectConfig {
  name: string;
  plugin: BackstorePlugin;
  /** Unit serial (VPD 80h); absent: the runtime derives one. */
  wwn?: string;
  /** Whose identity the unit presents (INQUIRY, VPD 80h/83h): tsio's, or LIO's for a disk moved from LIO. */
  compat: 'tsio' | 'lio';
  /** Complete: spec defaults, then plugin fields (write_back, readonly), then the file's own values. */
  attributes: StorageAttributes;
  /** Bytes. rd_mcp: always; fileio: when given. */
  size?: number;
  /** rd_mcp, fileio: 512 or 4096. */
  block_size?: number;
  /** rd_mcp: 512 or 4096, at least block_size; absent: block_size. */
  physical_block_size?: number;
  /** fileio, block, pscsi: as written (relative paths are relative to the config file). */
  dev?: string;
  /** rd_mcp. */
  nullio?: boolean;
  /** fileio, block: equals attributes.emulate_write_cache. */
  write_back?: boolean;
  /** fileio: O_DIRECT. */
  direct?: boolean;
  /** block: equals attributes.readonly. */
  readonly?: boolean;
  /** block: O_EXCL. */
  exclusive?: boolean;
  /** tape: the cartridge in the drive at start. */
  cartridge?: string;
  /** changer: comma-separated barcodes a new library starts with. */
  cartridges?: string;
  /** tape, changer: capacity of the cartridges they make, bytes. */
  capacity?: number;
  /** changer: comma-separated tape storage object names, its drive elements. */
  drives?: string;
  /** changer: storage slots and import/export slots. */
  slots?: number;
  import_export?: number;
}

export interface AuthConfig {
  userid: string;
  password: string;
  mutual_userid: string;
  mutual_password: string;
}

export interface PortalConfig {
  ip_address: string;
  port: number;
}

export interface LunConfig {
  index: number;
  /** "/backstores/<plugin>/<name>", as written. */
  storage_object: string;
  /** The two parts of storage_object. */
  plugin: BackstorePlugin;
  storage_object_name: string;
  alias?: string;
}

export interface MappedLunConfig {
  /** LUN number the initiator sees. */
  index: number;
  /** The TPG LUN it reaches. */
  tpg_lun: number;
  write_protect: boolean;
}

export interface NodeAclConfig {
  node_wwn: string;
  /** Complete per specs/fabrics/<fabric>.yaml acl_attributes. */
  attributes: Record<string, AttributeValue>;
  /** Present when the fabric has ACL auth (iscsi). */
  auth?: AuthConfig;
  mapped_luns: MappedLunConfig[];
}

export interface TpgConfig {
  tag: number;
  enable: boolean;
  /** Complete per the fabric spec's tpg_attributes. */
  attributes: Record<string, AttributeValue>;
  /** iSCSI login parameters, complete; absent for fabrics without. */
  parameters?: Record<string, AttributeValue>;
  /** Present when the fabric has TPG auth (iscsi). */
  auth?: AuthConfig;
  portals: PortalConfig[];
  luns: LunConfig[];
  node_acls: NodeAclConfig[];
  /** vhost: the vhost-user unix socket path, as written. */
  socket?: string;
  /** vhost: the socket's permission bits, octal text ("0660"). */
  socket_mode?: string;
  /** vhost: the socket's group, a name or number; absent: the daemon's group. */
  socket_group?: string;
  /** vhost: most request virtqueues; absent, as many as the front-end sets up. */
  num_queues?: number;
  /** vhost: the virtio-scsi target of this TPG on its socket's controller. */
  target?: number;
  /** vhost: scsi (a virtio-scsi controller) or blk (the one LUN as a virtio-blk disk). */
  device?: 'scsi' | 'blk';
  /** vhost, loopback: initiator port WWN of the nexus, when given. */
  nexus?: string;
}

export interface TargetConfig {
  fabric: FabricName;
  wwn: string;
  tpgs: TpgConfig[];
}

export interface FabricModuleConfig {
  name: FabricName;
  discovery_auth: AuthConfig & { enable: boolean };
}

/** The daemon's own settings (read at start; a change takes effect when tsiod restarts). */
export interface DaemonConfig {
  /** Event loops serving the data path: 1 is the main thread alone; 'auto' (default) is the number of cores up to io_threads_max. */
  io_threads?: number | 'auto';
  io_threads_max?: number;
  /** Longest busy-poll of vhost rings and io_uring completions before a loop sleeps, in ns; 0 (default): never. */
  poll_max_ns?: number;
}

export interface TsioConfig {
  /** File name (or the name given to parseConfig). */
  source: string;
  storage_objects: StorageObjectConfig[];
  targets: TargetConfig[];
  fabric_modules: FabricModuleConfig[];
  daemon?: DaemonConfig;
}

/** Reads and checks a config file; throws ConfigError listing every problem. */
export function loadConfigFile(path: string): TsioConfig {
  return parseConfig(readFileSync(path, 'utf8'), path);
}

/** Parses and checks config text; sourceName names it in errors. Throws ConfigError listing every problem. */
export function parseConfig(text: string, sourceName: string): TsioConfig {
  const doc = parseYaml(text, sourceName);
  // An empty file is an empty configuration, not an error.
  const data = doc.value === undefined || doc.value === null ? {} : doc.value;
  const s = specs();
  const { validate, patternHints } = compiledSchema(s);
  const issues: ConfigIssue[] = [];
  if (!validate(data)) {
    issues.push(...humanizeErrors(validate.errors ?? [], doc, data, { patternHints, unknownKeyHint: (path, key) => unknownKeyHint(s, data, path, key) }));
  }
  // Sense checks run on the raw data even after schema errors, so one pass reports everything.
  issues.push(...new SenseChecker(s, doc, data).run());
  if (issues.length > 0) throw new ConfigError(sourceName, sortIssues(issues));
  return normalize(s, data as RawConfig, sourceName);
}

/** specs/default.yaml: what tsiod serves without --config. */
export function defaultConfigPath(): string {
  return join(findSpecsDir(), 'default.yaml');
}

let defaultText: string | undefined;
export function defaultConfigText(): string {
  defaultText ??= readFileSync(defaultConfigPath(), 'utf8');
  return defaultText;
}

/** The embedded default configuration (specs/default.yaml, read when this module loads). */
export const DEFAULT_CONFIG_YAML: string = defaultConfigText();

let compiled: { specs: Specs; validate: ValidateFunction; patternHints: Map<string, string> } | undefined;

function compiledSchema(s: Specs): { validate: ValidateFunction; patternHints: Map<string, string> } {
  if (compiled?.specs !== s) {
    const { schema, patternHints } = buildConfigSchemaWithHints(s);
    compiled = { specs: s, validate: createAjv().compile(schema), patternHints };
  }
  return compiled;
}

/** "rd_mcp storage objects have no 'dev' (fileio, block, pscsi do)": a key valid elsewhere, not here. */
function unknownKeyHint(s: Specs, data: unknown, path: readonly (string | number)[], key: string): string | undefined {
  const at = (p: readonly (string | number)[]) => p.reduce<unknown>((v, k) => (isObject(v) || Array.isArray(v) ? (v as Record<string, unknown>)[k] : undefined), data);
  const elsewhere = (owners: string[], what: string) =>
    owners.length === 0 ? undefined : `${what} have no '${key}' (${owners.join(', ')} ${owners.length === 1 ? 'does' : 'do'})`;
  if (path.length === 2 && path[0] === 'storage_objects') {
    const plugin = (at(path) as Record<string, unknown>).plugin;
    return elsewhere(s.backstores.filter((b) => b.name !== plugin && storageObjectKeys(b).includes(key)).map((b) => b.name), `${String(plugin)} storage objects`);
  }
  if (path.length === 4 && path[0] === 'targets' && path[2] === 'tpgs') {
    const fabric = (at(path.slice(0, 2)) as Record<string, unknown>).fabric;
    return elsewhere(s.fabrics.filter((f) => f.name !== fabric && tpgKeys(f).includes(key)).map((f) => f.name), `${String(fabric)} TPGs`);
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Sense checks: what a schema cannot say. Written against unvalidated data,
// so every access is guarded; anything malformed is the schema's to report.

class SenseChecker {
  private readonly issues: ConfigIssue[] = [];
  /** "/backstores/<plugin>/<name>" -> index in storage_objects. */
  private readonly storageObjects = new Map<string, number>();
  private readonly soPathRe: RegExp;

  constructor(
    private readonly s: Specs,
    private readonly doc: LocatedYaml,
    private readonly data: unknown,
  ) {
    this.soPathRe = new RegExp(storageObjectPathPattern(s), 'u');
  }

  run(): ConfigIssue[] {
    const root = isObject(this.data) ? this.data : {};
    this.storageObjectChecks(list(root.storage_objects));
    this.targetChecks(list(root.targets));
    this.fabricModuleChecks(list(root.fabric_modules));
    return this.issues;
  }

  private error(path: YamlPath, message: string): void {
    const loc = this.doc.locate(path);
    this.issues.push({ path: formatPath(path), line: loc.line, column: loc.column, message });
  }

  private line(path: YamlPath): number {
    return this.doc.locate(path).line;
  }

  /** Reports the second and later occurrences of a key, pointing back at the first. */
  private unique(seen: Map<string, YamlPath>, key: string, at: YamlPath, what: string): void {
    const first = seen.get(key);
    if (!first) seen.set(key, at);
    else if (this.line(first) !== this.line(at)) this.error(at, `duplicate ${what} (first at line ${this.line(first)})`);
    else this.error(at, `duplicate ${what} (first at ${formatPath(first)})`);
  }

  private storageObjectChecks(items: unknown[]): void {
    const names = new Map<string, YamlPath>();
    const serials = new Map<string, YamlPath>();
    items.forEach((item, i) => {
      if (!isObject(item)) return;
      const at: YamlPath = ['storage_objects', i];
      const b = typeof item.plugin === 'string' ? this.s.findBackstore(item.plugin) : undefined;
      if (typeof item.name === 'string' && b) {
        const path = `/backstores/${b.name}/${item.name}`;
        this.unique(names, path, [...at, 'name'], `storage object name '${item.name}' for plugin ${b.name}`);
        if (!this.storageObjects.has(path)) this.storageObjects.set(path, i);
      }
      if (typeof item.wwn === 'string') this.unique(serials, item.wwn, [...at, 'wwn'], `unit serial '${item.wwn}'`);
      if (!b) return;
      const attrs = isObject(item.attributes) ? item.attributes : {};
      for (const f of b.fields) {
        // write_back: true with emulate_write_cache: false says two things; refuse rather than pick one.
        const a = f.attribute;
        if (a !== undefined && item[f.name] !== undefined && attrs[a] !== undefined && item[f.name] !== attrs[a]) {
          this.error([...at, f.name], `${f.name}: ${String(item[f.name])} contradicts attributes.${a}: ${String(attrs[a])} (${f.name} only sets that attribute's default)`);
        }
      }
      const blockSizeField = b.fields.find((f) => f.name === 'block_size');
      const size = sizeOrUndefined(item.size);
      const blockSize = typeof item.block_size === 'number' ? item.block_size : blockSizeField?.default;
      if (blockSizeField && size !== undefined && typeof blockSize === 'number' && size % blockSize !== 0) {
        this.error([...at, 'size'], `size ${size} bytes is not a multiple of block_size ${blockSize}`);
      }
      if (typeof item.physical_block_size === 'number' && typeof blockSize === 'number' && item.physical_block_size < blockSize) {
        this.error([...at, 'physical_block_size'], `physical_block_size ${item.physical_block_size} is below block_size ${blockSize}`);
      }
      const limit = (name: string) => (typeof attrs[name] === 'number' ? (attrs[name] as number) : (this.s.storageAttribute(name)?.default as number));
      if (limit('optimal_sectors') > limit('hw_max_sectors')) {
        const where = attrs.optimal_sectors !== undefined ? 'optimal_sectors' : 'hw_max_sectors';
        this.error([...at, 'attributes', where], `optimal_sectors ${limit('optimal_sectors')} is above hw_max_sectors ${limit('hw_max_sectors')}`);
      }
    });
  }

  private targetChecks(items: unknown[]): void {
    const wwns = new Map<string, YamlPath>();
    const sockets = new Map<string, YamlPath>();
    const controllers = new Map<string, { target: number; tpg: Record<string, unknown>; at: YamlPath }>();
    items.forEach((item, i) => {
      if (!isObject(item)) return;
      const at: YamlPath = ['targets', i];
      const f = typeof item.fabric === 'string' ? this.s.findFabric(item.fabric) : undefined;
      // WWNs compare case-insensitively (RFC 3722 folds iSCSI names to lower case).
      if (f && typeof item.wwn === 'string') this.unique(wwns, `${f.name} ${item.wwn.toLowerCase()}`, [...at, 'wwn'], `${f.name} target ${item.wwn}`);
      const tags = new Map<string, YamlPath>();
      list(item.tpgs).forEach((tpg, j) => {
        if (!isObject(tpg)) return;
        const tpgAt: YamlPath = [...at, 'tpgs', j];
        if (typeof tpg.tag === 'number') this.unique(tags, String(tpg.tag), [...tpgAt, 'tag'], `TPG tag ${tpg.tag}`);
        if (typeof tpg.socket === 'string') this.controllerChecks(controllers, sockets, i, tpg, tpgAt);
        if (f?.tpgFields.some((x) => x.name === 'socket_group')) this.socketChecks(tpg, tpgAt);
        this.tpgChecks(tpg, tpgAt, f);
      });
    });
  }

  private tpgChecks(tpg: Record<string, unknown>, at: YamlPath, f: FabricSpec | undefined): void {
    const luns = new Map<string, YamlPath>();
    list(tpg.luns).forEach((lun, k) => {
      if (!isObject(lun)) return;
      const lunAt: YamlPath = [...at, 'luns', k];
      if (typeof lun.index === 'number') this.unique(luns, String(lun.index), [...lunAt, 'index'], `LUN ${lun.index}`);
      const so = lun.storage_object;
      if (typeof so === 'string' && this.soPathRe.test(so) && !this.storageObjects.has(so)) {
        const guess = didYouMean(so, [...this.storageObjects.keys()]);
        this.error([...lunAt, 'storage_object'], `storage object ${so} does not exist${guess ? ` (did you mean ${guess}?)` : ''}`);
      }
    });

    const portals = new Map<string, YamlPath>();
    const portalDefault = fieldDefaults(f?.portal ?? []);
    list(tpg.portals).forEach((portal, k) => {
      if (!isObject(portal)) return;
      const pAt: YamlPath = [...at, 'portals', k];
      const ip = typeof portal.ip_address === 'string' ? portal.ip_address : String(portalDefault.ip_address);
      const port = typeof portal.port === 'number' ? portal.port : portalDefault.port;
      const bare = ip.replace(/^\[(.*)\]$/, '$1');
      if (isIP(bare) === 0) {
        if (typeof portal.ip_address === 'string') this.error([...pAt, 'ip_address'], `'${ip}' is not an IP address`);
        return;
      }
      const key = isIP(bare) === 6 ? `[${bare.toLowerCase()}]:${port}` : `${bare}:${port}`;
      this.unique(portals, key, pAt, `portal ${key}`);
    });

    this.authChecks(tpg.auth, [...at, 'auth']);
    const params = isObject(tpg.parameters) ? tpg.parameters : {};
    const paramDefault = fieldDefaults(f?.tpgParameters ?? []);
    const param = (k: string) => (typeof params[k] === 'number' ? params[k] : paramDefault[k]);
    if (params.FirstBurstLength !== undefined || params.MaxBurstLength !== undefined) {
      const first = param('FirstBurstLength');
      const max = param('MaxBurstLength');
      if (typeof first === 'number' && typeof max === 'number' && first > max) {
        const where = params.FirstBurstLength !== undefined ? 'FirstBurstLength' : 'MaxBurstLength';
        this.error([...at, 'parameters', where], `FirstBurstLength ${first} is above MaxBurstLength ${max} (RFC 7143 13.14)`);
      }
    }

    const acls = new Map<string, YamlPath>();
    list(tpg.node_acls).forEach((acl, k) => {
      if (!isObject(acl)) return;
      const aclAt: YamlPath = [...at, 'node_acls', k];
      if (typeof acl.node_wwn === 'string') this.unique(acls, acl.node_wwn.toLowerCase(), [...aclAt, 'node_wwn'], `node ACL ${acl.node_wwn}`);
      this.authChecks(acl.auth, [...aclAt, 'auth']);
      const mapped = new Map<string, YamlPath>();
      list(acl.mapped_luns).forEach((m, n) => {
        if (!isObject(m)) return;
        const mAt: YamlPath = [...aclAt, 'mapped_luns', n];
        if (typeof m.index === 'number') this.unique(mapped, String(m.index), [...mAt, 'index'], `mapped LUN ${m.index}`);
        if (typeof m.tpg_lun === 'number' && !luns.has(String(m.tpg_lun))) {
          this.error([...mAt, 'tpg_lun'], `the TPG has no LUN ${m.tpg_lun}${luns.size > 0 ? ` (it has ${[...luns.keys()].join(', ')})` : ''}`);
        }
      });
    });
  }

  /**
   * vhost: a socket is one controller. TPGs of one target may share it as its
   * virtio targets (distinct `target`, the same controller settings); another
   * target may not use it.
   */
  private controllerChecks(
    controllers: Map<string, { target: number; tpg: Record<string, unknown>; at: YamlPath }>,
    targets: Map<string, YamlPath>,
    target: number,
    tpg: Record<string, unknown>,
    at: YamlPath,
  ): void {
    const path = tpg.socket as string;
    const first = controllers.get(path);
    if (tpg.device === 'blk' && Array.isArray(tpg.luns) && tpg.luns.length > 1) {
      this.error([...at, 'luns'], `a virtio-blk TPG serves one LUN, not ${tpg.luns.length}`);
    }
    if (!first) {
      controllers.set(path, { target, tpg, at });
    } else if (first.target !== target) {
      this.error([...at, 'socket'], `vhost socket ${path} belongs to another target (line ${this.line(first.at)})`);
      return;
    } else {
      if (tpg.device === 'blk' || first.tpg.device === 'blk') {
        this.error([...at, 'socket'], `vhost socket ${path} is a virtio-blk disk's (line ${this.line(first.at)}); it has one TPG`);
        return;
      }
      for (const k of ['socket_mode', 'socket_group', 'num_queues']) {
        if (tpg[k] !== first.tpg[k]) this.error([...at, k], `${k} differs from the other TPG on socket ${path} (line ${this.line(first.at)}): one controller has one ${k}`);
      }
    }
    const vt = typeof tpg.target === 'number' ? tpg.target : 0;
    this.unique(targets, `${path} ${vt}`, [...at, typeof tpg.target === 'number' ? 'target' : 'socket'], `virtio target ${vt} on socket ${path}`);
  }

  /** vhost socket ownership: what the schema cannot see. */
  private socketChecks(tpg: Record<string, unknown>, at: YamlPath): void {
    if (typeof tpg.socket_mode === 'number') {
      this.error([...at, 'socket_mode'], 'quote it, e.g. socket_mode: "0660" (YAML reads an unquoted 0660 as the decimal number 660)');
    }
    const g = tpg.socket_group;
    if (typeof g !== 'string') return;
    if (/^[0-9]+$/.test(g)) {
      // (gid_t)-1 means "leave the group" to chown; no group has it.
      if (Number(g) >= 0xffffffff) this.error([...at, 'socket_group'], `gid ${g} is out of range (at most 4294967294)`);
    } else if (groupId(g) < 0) this.error([...at, 'socket_group'], `no group '${g}' on this host`);
  }

  /** CHAP needs a user and a secret; mutual CHAP needs both directions. */
  private authChecks(auth: unknown, at: YamlPath): void {
    if (!isObject(auth)) return;
    const set = (k: string) => typeof auth[k] === 'string' && auth[k] !== '';
    if (set('userid') !== set('password')) this.error(at, `userid and password must be set together`);
    if (set('mutual_userid') !== set('mutual_password')) this.error(at, `mutual_userid and mutual_password must be set together`);
    else if (set('mutual_userid') && !set('userid')) this.error(at, `mutual CHAP needs userid and password as well`);
  }

  private fabricModuleChecks(items: unknown[]): void {
    const names = new Map<string, YamlPath>();
    items.forEach((item, i) => {
      if (!isObject(item)) return;
      if (typeof item.name === 'string') this.unique(names, item.name, ['fabric_modules', i, 'name'], `fabric module ${item.name}`);
      this.authChecks(item.discovery_auth, ['fabric_modules', i, 'discovery_auth']);
    });
  }
}

// ---------------------------------------------------------------------------
// Normalization: only reached when the data passed every check, so shapes are known.

type Raw = Record<string, unknown>;
interface RawConfig {
  storage_objects?: Raw[];
  targets?: Raw[];
  fabric_modules?: Raw[];
  daemon?: DaemonConfig;
}

/** Every field with a value: the given one (sizes in bytes) or the default. */
function applyFields(fields: readonly FieldSpec[], given: unknown): Record<string, FieldValue> {
  const src = isObject(given) ? given : {};
  const out: Record<string, FieldValue> = {};
  for (const f of fields) {
    const v = src[f.name] ?? f.default;
    if (v === undefined) continue;
    out[f.name] = f.type === 'size' ? parseSize(v as number | string) : (v as FieldValue);
  }
  return out;
}

function normalize(s: Specs, raw: RawConfig, source: string): TsioConfig {
  return {
    source,
    storage_objects: (raw.storage_objects ?? []).map((so) => normalizeStorageObject(s, so)),
    targets: (raw.targets ?? []).map((t) => normalizeTarget(s, t)),
    fabric_modules: (raw.fabric_modules ?? []).map((m) => ({
      name: m.name as FabricName,
      discovery_auth: applyFields(s.fabric(m.name as string).discoveryAuth, m.discovery_auth) as unknown as FabricModuleConfig['discovery_auth'],
    })),
    ...(raw.daemon !== undefined ? { daemon: { ...raw.daemon } } : {}),
  };
}

function normalizeStorageObject(s: Specs, raw: Raw): StorageObjectConfig {
  const b = s.backstore(raw.plugin as string);
  const own = applyFields(b.fields, raw);
  const attributes: Record<string, FieldValue> = { ...s.storageAttributeDefaults() };
  // Plugin fields set attribute defaults; explicit attributes win (conflicts were refused).
  for (const f of b.fields) if (f.attribute !== undefined && own[f.name] !== undefined) attributes[f.attribute] = own[f.name];
  Object.assign(attributes, raw.attributes ?? {});
  for (const f of b.fields) if (f.attribute !== undefined) own[f.name] = attributes[f.attribute];
  return {
    name: raw.name as string,
    plugin: b.name as BackstorePlugin,
    ...(raw.wwn !== undefined ? { wwn: raw.wwn as string } : {}),
    compat: (raw.compat as 'tsio' | 'lio' | undefined) ?? 'tsio',
    ...own,
    attributes: attributes as unknown as StorageAttributes,
  };
}

function normalizeTarget(s: Specs, raw: Raw): TargetConfig {
  const f = s.fabric(raw.fabric as string);
  const tpgs = ((raw.tpgs as Raw[] | undefined) ?? []).map((tpg): TpgConfig => {
    const luns = ((tpg.luns as Raw[] | undefined) ?? []).map((l): LunConfig => {
      const [, , plugin, name] = (l.storage_object as string).split('/');
      return {
        index: l.index as number,
        storage_object: l.storage_object as string,
        plugin: plugin as BackstorePlugin,
        storage_object_name: name,
        ...(l.alias !== undefined ? { alias: l.alias as string } : {}),
      };
    });
    const acls = ((tpg.node_acls as Raw[] | undefined) ?? []).map((a): NodeAclConfig => ({
      node_wwn: a.node_wwn as string,
      attributes: applyFields(f.aclAttributes, a.attributes),
      ...(f.hasFeature('auth') || f.hasFeature('acls_auth') ? { auth: applyFields(f.auth, a.auth) as unknown as AuthConfig } : {}),
      mapped_luns: ((a.mapped_luns as Raw[] | undefined) ?? []).map((m) => ({
        index: m.index as number,
        tpg_lun: m.tpg_lun as number,
        write_protect: (m.write_protect as boolean | undefined) ?? false,
      })),
    }));
    return {
      ...applyFields(f.tpgFields, tpg),
      tag: tpg.tag as number,
      enable: (tpg.enable as boolean | undefined) ?? true,
      attributes: applyFields(f.tpgAttributes, tpg.attributes),
      ...(f.tpgParameters.length > 0 ? { parameters: applyFields(f.tpgParameters, tpg.parameters) } : {}),
      ...(f.hasFeature('auth') ? { auth: applyFields(f.auth, tpg.auth) as unknown as AuthConfig } : {}),
      portals: ((tpg.portals as Raw[] | undefined) ?? []).map((p) => applyFields(f.portal, p) as unknown as PortalConfig),
      luns,
      node_acls: acls,
    };
  });
  return { fabric: f.name as FabricName, wwn: raw.wwn as string, tpgs };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function sizeOrUndefined(v: unknown): number | undefined {
  try {
    return typeof v === 'number' || typeof v === 'string' ? parseSize(v) : undefined;
  } catch {
    return undefined;
  }
}
