// Builds the live objects a validated configuration describes, without
// serving them (embedding programs and tests; tsiod uses reconcile()).

import type { TsioConfig } from '../config/config';
import type { Root } from '../../src/model/root';
import { absolutePaths, EMPTY_CONFIG, reconcile } from './reconcile';

/** Creates storage objects, then targets, TPGs, LUNs and ACLs (the order restore needs). */
export async function applyConfig(root: Root, cfg: TsioConfig, baseDir: string): Promise<void> {
  await reconcile({ root, services: new Map(), config: EMPTY_CONFIG }, absolutePaths(cfg, baseDir), { serve: false });
}
