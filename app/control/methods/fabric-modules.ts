// Fabric-module-wide settings (iSCSI discovery authentication).

import type { MethodTable } from '../context';
import { obj, str, type Obj } from '../params';

export const fabricModuleMethods: MethodTable = {
  'fabric_modules.set': {
    doc: 'Sets a fabric module\'s discovery_auth (iscsi).',
    params: { name: str, discovery_auth: obj },
    run: (p, c) =>
      c.edit((doc) => {
        const mods = (doc.fabric_modules ??= []);
        let mod = mods.find((x) => x.name === p.name);
        if (!mod) mods.push((mod = { name: p.name }));
        mod.discovery_auth = { ...((mod.discovery_auth as Obj) ?? {}), ...(p.discovery_auth as Obj) };
      }),
  },
};
