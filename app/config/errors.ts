// The one error type every config problem becomes: YAML syntax, schema and
// semantic errors alike, each with the YAML path and line it is about, so a
// user can fix a whole file in one pass.

export interface ConfigIssue {
  /** Where in the document, e.g. "targets[0].tpgs[0].luns[1].storage_object"; "" for the whole file. */
  path: string;
  /** 1-based line in the source. */
  line: number;
  /** 1-based column in the source. */
  column?: number;
  message: string;
}

export class ConfigError extends Error {
  readonly source: string;
  readonly errors: readonly ConfigIssue[];

  constructor(source: string, errors: readonly ConfigIssue[]) {
    super(errors.map((e) => formatIssue(source, e)).join('\n'));
    this.name = 'ConfigError';
    this.source = source;
    this.errors = errors;
  }
}

/** "FILE:LINE: path: message", the form compilers use, so editors can jump to it. */
export function formatIssue(source: string, e: ConfigIssue): string {
  return e.path === '' ? `${source}:${e.line}: ${e.message}` : `${source}:${e.line}: ${e.path}: ${e.message}`;
}

/** By line, keeping discovery order for equal lines; duplicates dropped. */
export function sortIssues(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  const unique = issues.filter((i) => {
    const key = `${i.line}\u0000${i.path}\u0000${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return unique.map((issue, order) => ({ issue, order })).sort((a, b) => a.issue.line - b.issue.line || a.order - b.order).map((x) => x.issue);
}
