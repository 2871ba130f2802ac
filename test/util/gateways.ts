// Gateways for the multi-gateway tests: tsiod processes that export one rbd image of the shared test
// cluster under one target name and unit serial, each in a TPG (and ALUA group) of its own.
import { execFileSync } from 'node:child_process';

import type { Ceph } from './ceph';

export interface GatewayUnit {
  iqn: string;
  /** The unit serial every gateway reports (VPD 80h, and the NAA derived from it). */
  serial: string;
  image: string;
  /** Bytes. */
  size: number;
  /** More storage object attributes, as YAML flow entries. */
  attributes?: string;
  /** The gateways' ALUA state while another owns the image (non_owner_state); absent: the default. */
  nonOwnerState?: 'non_optimized' | 'standby';
}

const storageObject = (c: Ceph, u: GatewayUnit, tag: number): string => `storage_objects:
  - { name: shared, plugin: rbd, image: ${u.image}, conf: ${c.conf}, size: ${u.size}, wwn: ${u.serial}, gateway_group: ${tag},${u.nonOwnerState === undefined ? '' : ` non_owner_state: ${u.nonOwnerState},`}
      attributes: { ${u.attributes ?? ''} } }
`;

/** One gateway's config: the image as LUN 0 of TPG `tag`, which is also its ALUA group. */
export function gatewayConfig(c: Ceph, u: GatewayUnit, tag: number, port: number): string {
  return `${storageObject(c, u, tag)}targets:
  - fabric: iscsi
    wwn: ${u.iqn}
    tpgs:
      - tag: ${tag}
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rbd/shared } ]
`;
}

/**
 * One gateway's config for a vhost-user-scsi guest: the image as LUN 0 of TPG `tag` (its ALUA group) of
 * target u.iqn, on `socket`, the guest's I_T nexus named `nexus`.
 */
export function vhostGatewayConfig(c: Ceph, u: GatewayUnit, tag: number, socket: string, nexus: string): string {
  return `${storageObject(c, u, tag)}targets:
  - fabric: vhost
    wwn: ${u.iqn}
    tpgs:
      - tag: ${tag}
        socket: ${socket}
        nexus: ${nexus}
        luns: [ { index: 0, storage_object: /backstores/rbd/shared } ]
`;
}

/** Removes a gateway test's image and the shared records its gateways made (they outlive the image). */
export async function removeGatewayImage(c: Ceph, image: string): Promise<void> {
  await c.rmImage(image);
  for (const rec of ['pr', 'alua']) {
    try {
      execFileSync('rados', ['-c', c.conf, '-p', 'rbd', 'rm', `tsio.${rec}.${image}`], { stdio: 'ignore' });
    } catch {
      /* never made */
    }
  }
}
