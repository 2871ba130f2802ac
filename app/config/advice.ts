// What a valid configuration may still not do as its author expects, said
// at startup (tsiod logs it) and where the object is shown (tcli info).

import type { TargetConfig, TpgConfig, TsioConfig } from './config';

/**
 * A TPG in demo mode (generate_node_acls) whose LUNs are write protected for initiators without an ACL
 * (demo_mode_write_protect defaults to true, as in LIO): writes fail with DATA PROTECT.
 */
export function demoWriteProtected(tpg: TpgConfig): boolean {
  return tpg.attributes.generate_node_acls === true && tpg.attributes.demo_mode_write_protect === true && tpg.luns.length > 0;
}

export function demoWriteProtectAdvice(t: TargetConfig, tpg: TpgConfig): string {
  return `/${t.fabric}/${t.wwn}/tpg${tpg.tag} is in demo mode (generate_node_acls=true) with demo_mode_write_protect=true: initiators without an ACL get its ${tpg.luns.length} LUNs read-only; to let them write: set attribute demo_mode_write_protect=false (YAML: attributes: { demo_mode_write_protect: false })`;
}

/** Every such remark about a configuration, one line each. */
export function configAdvice(cfg: TsioConfig): string[] {
  const out: string[] = [];
  for (const t of cfg.targets) for (const tpg of t.tpgs) if (demoWriteProtected(tpg)) out.push(demoWriteProtectAdvice(t, tpg));
  return out;
}
