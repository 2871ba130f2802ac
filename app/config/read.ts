// A configuration file as the daemon reads it: tsio YAML, or a targetcli
// saveconfig.json converted (with what could not be mapped), paths made
// absolute against the file's directory.

import type { TsioConfig } from './config';
import { parseConfig } from './config';
import { isLioSaveconfig, lioToDocument } from './lio-import';
import { absolutePaths } from '../daemon/reconcile';

/** A configuration file's text (YAML, or a targetcli saveconfig.json converted) as a config, paths made absolute. */
export function readConfigText(text: string, source: string, baseDir: string): { cfg: TsioConfig; notes: string[]; lio: boolean } {
  const lio = isLioSaveconfig(text);
  if (!lio) return { cfg: absolutePaths(parseConfig(text, source), baseDir), notes: [], lio: false };
  const conv = lioToDocument(lio);
  return { cfg: absolutePaths(parseConfig(JSON.stringify(conv.document), `${source} (converted from targetcli saveconfig.json)`), baseDir), notes: conv.unmapped, lio: true };
}

