// What a control method is, and what it runs against: the running daemon,
// its configuration as a document to edit, and the one path every change
// takes (edit a copy of the document, validate it whole with parseConfig, the
// rules tsiod --config obeys, then apply the difference live with
// reconcile()). A change that is refused or fails leaves the daemon as it was.

import { parseConfig, type TsioConfig } from '../config/config';
import { configToDocument, dumpConfig, type ConfigDocument } from '../config/dump';
import { absolutePaths, reconcile, type Live, type ReconcileReport } from '../daemon/reconcile';
import { log } from '../../src/core/log';
import type { ParamSpecs, Params } from './params';

/** One JSON-RPC method: its parameters (decoded before it runs), its help line, and what it does. */
export interface MethodDef {
  params: ParamSpecs;
  doc: string;
  run(p: Params, c: ControlContext): Promise<unknown> | unknown;
}

/** Method name -> its declaration; the order is the order `methods` lists them in. */
export type MethodTable = Record<string, MethodDef>;

export class ControlContext {
  private savedText: string;
  readonly startedAt = Date.now();

  constructor(
    readonly live: Live,
    /** Where saveconfig writes and restoreconfig reads by default. */
    readonly savePath: string,
    /** Every method served (the `methods` method lists them). */
    readonly methods: MethodTable,
  ) {
    this.savedText = dumpConfig(live.config);
  }

  /** True when the live config differs from what was last loaded or saved. */
  get dirty(): boolean {
    return dumpConfig(this.live.config) !== this.savedText;
  }

  /** The live config is now what the save file holds. */
  markSaved(): void {
    this.savedText = dumpConfig(this.live.config);
  }

  /** A copy of the live config as a document a method may edit. */
  document(): ConfigDocument {
    return structuredClone(configToDocument(this.live.config));
  }

  /** Validates a document whole (a config is taken as it is) and reconciles the daemon to it. */
  async apply(next: ConfigDocument | TsioConfig, source = '<control>'): Promise<ReconcileReport> {
    const cfg = 'source' in next ? next : absolutePaths(parseConfig(JSON.stringify(next), source), process.cwd());
    const before = this.live.config;
    try {
      return await reconcile(this.live, cfg);
    } catch (e) {
      // A request that fails changes nothing: what was applied before the failure is taken back.
      if (this.live.config !== before) {
        await reconcile(this.live, before).catch((e2) => log.warn(`control: could not take back a failed change: ${(e2 as Error).message}`));
      }
      throw e;
    }
  }

  /** Edits a copy of the document and applies it; the edit's result (or { ok: true }) is the method's. */
  async edit(fn: (doc: ConfigDocument) => unknown): Promise<unknown> {
    const doc = this.document();
    const result = fn(doc);
    await this.apply(doc);
    return result ?? { ok: true };
  }
}
