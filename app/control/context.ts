// What a control method is, and what it runs against: the running daemon,
// its configuration as a document to edit, and the one path every change
// takes (edit a copy of the document, validate it whole with parseConfig, the
// rules tsiod --config obeys, then apply the difference live with
// reconcile()). A change that is refused or fails leaves the daemon as it was.

import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError, parseConfig, type TsioConfig } from '../config/config';
import { readConfigText } from '../config/read';
import { configToDocument, dumpConfig, type ConfigDocument } from '../config/dump';
import { absolutePaths, reconcile, type Live, type ReconcileReport } from '../daemon/reconcile';
import { log } from '../../src/core/log';
import { invalidParams, type ParamSpecs, type Params } from './params';
import { shellMessage } from './shell-paths';

/** One JSON-RPC method: its parameters (decoded before it runs), its help line, and what it does. */
export interface MethodDef {
  params: ParamSpecs;
  doc: string;
  /** Logged (who and what) even though it leaves the configuration as it is: a save. */
  audit?: boolean;
  run(p: Params, c: ControlContext): Promise<unknown> | unknown;
}

/** Method name -> its declaration; the order is the order `methods` lists them in. */
export type MethodTable = Record<string, MethodDef>;

/** How the running configuration stands against the saveconfig file. */
export interface SaveState {
  /** saved: the file holds it; differs: it does not; absent: there is no file; unreadable: not a configuration. */
  state: 'saved' | 'differs' | 'absent' | 'unreadable';
  path: string;
  /** Why unreadable. */
  detail?: string;
}

export class ControlContext {
  readonly startedAt = Date.now();

  constructor(
    readonly live: Live,
    /** Where saveconfig writes and restoreconfig reads by default. */
    readonly savePath: string,
    /** Every method served (the `methods` method lists them). */
    readonly methods: MethodTable,
  ) {}

  /** The running configuration against the file saveconfig writes (read afresh: someone may have edited it). */
  saveState(): SaveState {
    const path = this.savePath;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'absent', path };
      return { state: 'unreadable', path, detail: (e as Error).message };
    }
    try {
      const saved = readConfigText(text, path, dirname(path)).cfg;
      return { state: dumpConfig(saved) === dumpConfig(this.live.config) ? 'saved' : 'differs', path };
    } catch (e) {
      return { state: 'unreadable', path, detail: e instanceof ConfigError ? `${e.errors.length} problems, first: ${e.errors[0]?.message}` : (e as Error).message };
    }
  }

  /** True when there is something to save: the running config is not what the save file holds. */
  get dirty(): boolean {
    const st = this.saveState();
    if (st.state === 'absent') return this.live.config.storage_objects.length + this.live.config.targets.length > 0;
    return st.state !== 'saved';
  }

  /** A copy of the live config as a document a method may edit. */
  document(): ConfigDocument {
    return structuredClone(configToDocument(this.live.config));
  }

  /** Validates a document whole (a config is taken as it is) and reconciles the daemon to it. */
  async apply(next: ConfigDocument | TsioConfig, source = '<control>'): Promise<ReconcileReport> {
    let cfg: TsioConfig;
    try {
      cfg = 'source' in next ? next : absolutePaths(parseConfig(JSON.stringify(next), source), process.cwd());
    } catch (e) {
      // A refused edit is said in tcli's terms: the node and the parameter, not the document's layout.
      if (e instanceof ConfigError && !('source' in next)) throw invalidParams(shellMessage(next, e.errors));
      throw e;
    }
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
