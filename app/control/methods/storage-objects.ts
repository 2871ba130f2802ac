// Storage objects (/backstores/<plugin>/<name>): list, create, change, delete.

import { resolve } from 'node:path';
import { specs } from '../../config/specs';
import { soKey } from '../../daemon/reconcile';
import type { MethodTable } from '../context';
import { findStorageObject } from '../lookup';
import { invalidParams, optObj, str, type Obj } from '../params';
import { storageObjectsRuntime } from '../views';
import { removeLuns } from './luns';

export const storageObjectMethods: MethodTable = {
  'storage_objects.list': {
    doc: 'Storage objects, with size and users.',
    params: {},
    run: async (_p, c) => Object.entries(await storageObjectsRuntime(c.live)).map(([path, r]) => ({ path, ...(r as Obj) })),
  },
  'storage_objects.get': {
    doc: 'One storage object: its config and runtime.',
    params: { path: str },
    run: async (p, c) => {
      const so = findStorageObject(c.document(), p.path);
      const full = c.live.config.storage_objects.find((x) => soKey(x) === p.path);
      return { ...full, config: so, runtime: (await storageObjectsRuntime(c.live))[p.path as string] };
    },
  },
  'storage_objects.create': {
    doc: 'Creates a storage object: plugin, name and the plugin fields (specs/backstores/<plugin>.yaml); attributes optional.',
    params: { plugin: str, name: str, attributes: optObj, fields: optObj },
    run: (p, c) =>
      c.edit((doc) => {
        if (!specs().findBackstore(p.plugin as string)) throw invalidParams(`unknown plugin '${p.plugin}' (known: ${specs().backstores.map((b) => b.name).join(', ')})`);
        const path = `/backstores/${p.plugin}/${p.name}`;
        if (doc.storage_objects.some((x) => soKey(x as { plugin: string; name: string }) === path)) throw invalidParams(`storage object ${path} already exists`);
        const so: Obj = { name: p.name, plugin: p.plugin, ...((p.fields as Obj) ?? {}) };
        if (typeof so.dev === 'string') so.dev = resolve(so.dev);
        if (p.attributes) so.attributes = p.attributes;
        doc.storage_objects.push(so);
        return { path };
      }),
  },
  'storage_objects.set': {
    doc: 'Changes attributes (live; raises MODE PARAMETERS CHANGED or INQUIRY DATA HAS CHANGED) or fields (size resizes live; others reopen the store).',
    params: { path: str, attributes: optObj, fields: optObj },
    run: (p, c) =>
      c.edit((doc) => {
        const so = findStorageObject(doc, p.path);
        if (p.fields) {
          for (const k of ['name', 'plugin']) if (k in (p.fields as Obj)) throw invalidParams(`${k} cannot be changed; delete and create instead`);
          Object.assign(so, p.fields);
        }
        if (p.attributes) so.attributes = { ...((so.attributes as Obj) ?? {}), ...(p.attributes as Obj) };
      }),
  },
  'storage_objects.delete': {
    doc: 'Deletes a storage object and every LUN (and mapped LUN) using it; in-flight I/O finishes first.',
    params: { path: str },
    run: (p, c) =>
      c.edit((doc) => {
        const so = findStorageObject(doc, p.path);
        doc.storage_objects.splice(doc.storage_objects.indexOf(so), 1);
        for (const t of doc.targets) {
          for (const tpg of (t.tpgs as Obj[]) ?? []) {
            const gone = ((tpg.luns as Obj[]) ?? []).filter((l) => l.storage_object === p.path).map((l) => l.index);
            removeLuns(tpg, gone);
          }
        }
      }),
  },
};
