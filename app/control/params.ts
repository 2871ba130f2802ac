// Parameter decoding for the control methods: each method declares its
// by-name parameters once as a table of specs (name -> type, required), and
// decodeParams checks a request against it before the method runs, so a
// method never sees an unknown, missing or mistyped parameter.

import { didYouMean } from '../config/validation';
import { RpcCode } from './wire';

/** A refusal with its JSON-RPC error code; anything else a method throws is FAILED. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Invalid params: the request names something that is not there or cannot be. */
export const invalidParams = (msg: string): RpcError => new RpcError(RpcCode.PARAMS, msg);

export type ParamType = 'string' | 'int' | 'bool' | 'object';
export interface ParamSpec {
  type: ParamType;
  required?: boolean;
}
export type ParamSpecs = Record<string, ParamSpec>;
export type Params = Record<string, unknown>;

export const str = { type: 'string', required: true } as const;
export const optStr = { type: 'string' } as const;
export const int = { type: 'int', required: true } as const;
export const optInt = { type: 'int' } as const;
export const bool = { type: 'bool', required: true } as const;
export const optBool = { type: 'bool' } as const;
export const obj = { type: 'object', required: true } as const;
export const optObj = { type: 'object' } as const;

/** A TPG's address: its target's WWN and its tag. */
export const TPG = { wwn: str, tag: int };
/** A node ACL's address: its TPG's and the initiator's node WWN. */
export const ACL = { ...TPG, node_wwn: str };

/** A JSON object: a params object, or a node of the config document. */
export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Checks a request's params against the method's declaration: names, presence and types. */
export function decodeParams(method: string, specs: ParamSpecs, params: unknown): Params {
  if (params === undefined) params = {};
  if (!isObj(params)) throw invalidParams(`${method}: params must be an object (by-name parameters)`);
  for (const k of Object.keys(params)) {
    if (!(k in specs)) {
      const known = Object.keys(specs);
      const g = didYouMean(k, known);
      throw invalidParams(`${method}: unknown parameter '${k}'${g ? ` (did you mean ${g}?)` : known.length ? ` (known: ${known.join(', ')})` : ' (it takes none)'}`);
    }
  }
  for (const [k, spec] of Object.entries(specs)) {
    const v = params[k];
    if (v === undefined || v === null) {
      if (spec.required) throw invalidParams(`${method}: missing parameter '${k}' (${spec.type})`);
      delete params[k];
      continue;
    }
    const ok =
      spec.type === 'string' ? typeof v === 'string' && v !== ''
      : spec.type === 'int' ? typeof v === 'number' && Number.isInteger(v) && v >= 0
      : spec.type === 'bool' ? typeof v === 'boolean'
      : isObj(v);
    if (!ok) {
      const what = spec.type === 'int' ? 'a non-negative whole number' : spec.type === 'string' ? 'a non-empty string' : spec.type === 'bool' ? 'true or false' : `an ${spec.type}`;
      throw invalidParams(`${method}: parameter '${k}' must be ${what}, not ${JSON.stringify(v)}`);
    }
  }
  return params;
}
