// What startup needs of the host, checked before anything starts (and by
// tsiod --check): the files and directories of fileio objects, block and
// pass-through devices, the directories vhost sockets go in, and portals no
// one else listens on. Each problem is a ConfigIssue at the YAML path (and
// line) of the object it is about, like a schema error.

import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import type { ConfigIssue } from './errors';
import type { StorageObjectConfig, TsioConfig } from './config';
import { formatPath, type YamlPath } from './yaml';

/** The 1-based line of a path in the source; 0 when unknown (a converted targetcli file). */
export type Locate = (path: YamlPath) => number;

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The nearest existing ancestor of a path (what a mkdir -p would start from). */
function existingAncestor(path: string): string {
  let d = path;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  return d;
}

function storageObjectIssue(so: StorageObjectConfig): string | undefined {
  if (so.dev === undefined) return undefined;
  const dev = so.dev;
  const st = existsSync(dev) ? statSync(dev) : undefined;
  const ro = so.attributes.readonly === true || so.readonly === true;
  switch (so.plugin) {
    case 'fileio':
      if (!st) {
        if (!existsSync(dirname(dev))) return `dev ${dev}: directory ${dirname(dev)} does not exist`;
        if (so.size === undefined) return `dev ${dev} does not exist, and without a size it cannot be created`;
        if (!writable(dirname(dev))) return `dev ${dev}: cannot create it (directory ${dirname(dev)} is not writable)`;
        return undefined;
      }
      if (st.isDirectory()) return `dev ${dev} is a directory, not a file`;
      if (!ro && !writable(dev)) return `dev ${dev} is not writable (set readonly, or fix its permissions)`;
      return undefined;
    case 'block':
      if (!st) return `dev ${dev}: no such device`;
      if (!st.isBlockDevice()) return `dev ${dev} is not a block device${st.isFile() ? ' (a file: use the fileio plugin)' : ''}`;
      if (!ro && !writable(dev)) return `dev ${dev} is not writable`;
      return undefined;
    case 'pscsi':
      if (!st) return `dev ${dev}: no such device`;
      if (!st.isBlockDevice() && !st.isCharacterDevice()) return `dev ${dev} is not a SCSI device node (/dev/sgN or /dev/sdX)`;
      return undefined;
    default:
      return undefined;
  }
}

/** Resolves with the listen error's code (EADDRINUSE, EADDRNOTAVAIL, EACCES), or undefined when ip:port is free. */
export function portBusy(ip: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.listen({ host: ip.replace(/^\[(.*)\]$/, '$1'), port, exclusive: true }, () => s.close(() => resolve(undefined)));
  });
}

const LISTEN_WHY: Record<string, string> = {
  EADDRINUSE: 'is already in use by another program',
  EADDRNOTAVAIL: 'is not an address of this host',
  EACCES: 'needs privileges to listen on',
};

/** Every host problem of a validated configuration. */
export async function hostIssues(cfg: TsioConfig, locate: Locate): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = [];
  const add = (path: YamlPath, message: string) => issues.push({ path: formatPath(path), line: locate(path), message });
  cfg.storage_objects.forEach((so, i) => {
    const why = storageObjectIssue(so);
    if (why) add(['storage_objects', i, 'dev'], why);
  });
  const portals = new Map<string, YamlPath>();
  cfg.targets.forEach((t, i) =>
    t.tpgs.forEach((tpg, j) => {
      const at: YamlPath = ['targets', i, 'tpgs', j];
      if (tpg.socket !== undefined) {
        const dir = dirname(tpg.socket);
        const base = existingAncestor(dir);
        if (!statSync(base).isDirectory()) add([...at, 'socket'], `socket ${tpg.socket}: ${base} is not a directory`);
        else if (base !== dir && !writable(base)) add([...at, 'socket'], `socket ${tpg.socket}: cannot create ${dir} (${base} is not writable)`);
        else if (base === dir && !writable(dir)) add([...at, 'socket'], `socket ${tpg.socket}: directory ${dir} is not writable`);
        else if (existsSync(tpg.socket) && !statSync(tpg.socket).isSocket()) add([...at, 'socket'], `socket ${tpg.socket}: a file that is not a socket is in the way`);
      }
      if (t.fabric !== 'iscsi' || !tpg.enable) return;
      tpg.portals.forEach((p, k) => {
        const key = `${p.ip_address}|${p.port}`;
        if (!portals.has(key)) portals.set(key, [...at, 'portals', k]);
      });
    }),
  );
  // Portals are shared by the TPGs that list them: each is tried once.
  const tries = await Promise.all([...portals].map(async ([key, path]) => [key, path, await portBusy(key.split('|')[0], Number(key.split('|')[1]))] as const));
  for (const [key, path, code] of tries) {
    if (code === undefined) continue;
    const [ip, port] = key.split('|');
    add(path, `portal ${ip.includes(':') ? `[${ip}]` : ip}:${port} ${LISTEN_WHY[code] ?? `cannot be listened on (${code})`}`);
  }
  return issues.sort((a, b) => a.line - b.line);
}
