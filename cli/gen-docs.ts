#!/usr/bin/env node
// Made at build time, never kept in git: the manual pages tsiod(8) and tcli(8)
// and tcli's bash completion, from the same texts tcli and tsiod print (the
// command tables, the spec files, tsiod's usage).
//   node dist/cli/gen-docs.js OUTDIR            OUTDIR/man/{tsiod,tcli}.8, OUTDIR/completion/tcli
// installCompletion() is npm's postinstall: a global install puts the completion where bash-completion looks.

import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { specs, type FieldSpec } from '../app/config/specs';
import { TSIOD_USAGE } from '../app/config/daemon-usage';
import { tsioVersion } from '../app/config/version';
import { fieldLine, manual } from './help';
import { VERBS } from './commands';

/** Text as roff shows it verbatim: backslashes escaped, no line read as a request. */
const roffText = (t: string): string =>
  t
    .split('\n')
    .map((l) => l.replace(/\\/g, '\\e').replace(/^([.'])/, '\\&$1'))
    .join('\n');

/** A page from sections of preformatted text: NAME first, then each [TITLE, body]. */
function manPage(name: string, summary: string, sections: [string, string][]): string {
  const out = [`.TH ${name.toUpperCase()} 8 "" "tsio ${tsioVersion()}" "tsio"`, '.SH NAME', `${name} \\- ${summary}`];
  for (const [title, body] of sections) out.push(`.SH ${title}`, '.nf', roffText(body.replace(/^\n+|\n+$/g, '')), '.fi');
  return out.join('\n') + '\n';
}

/** tcli(8): the manual `tcli help` prints, its sections as the page's. */
export function tcliPage(): string {
  const lines = manual(VERBS).split('\n');
  const sections: [string, string][] = [];
  for (const l of lines.slice(1)) {
    // Headings start at the margin; everything else in the manual is indented.
    if (/^[A-Z]/.test(l)) sections.push([l, '']);
    else if (sections.length) sections[sections.length - 1][1] += `${l.replace(/^ {4}/, '')}\n`;
  }
  return manPage('tcli', 'configure a running tsiod, in the manner of targetcli', sections.filter(([t]) => t !== 'NAME'));
}

const indent = (f: FieldSpec) => fieldLine(f).replace(/^ {2}/gm, '    ');

/** tsiod(8): its usage, signals, systemd integration and the configuration file's fields from specs/. */
export function tsiodPage(): string {
  const s = specs();
  const lines = TSIOD_USAGE.split('\n');
  const first = lines.findIndex((l) => /^ {2}-/.test(l));
  const synopsis = lines.slice(0, first).map((l) => l.trim()).join(' ');
  const options = lines.slice(first);
  const config = [
    'A YAML file shaped like targetcli\'s saveconfig.json: storage_objects, targets (fabric, wwn, tpgs with',
    'attributes, parameters, auth, portals, luns, node_acls), fabric_modules. A targetcli saveconfig.json is',
    'converted. Every field, with type, default and range:',
    '',
    ...s.backstores.flatMap((b) => [`storage_objects (plugin: ${b.name}): ${b.doc}`, ...b.fields.map(indent), '']),
    'storage_objects[].attributes:',
    ...s.storageAttributes.map(indent),
    '',
    ...s.fabrics.flatMap((f) => [
      `targets (fabric: ${f.name}): ${f.doc} WWN: ${f.wwnExpect}.`,
      ...(f.tpgFields.length ? ['  tpgs[]:', ...f.tpgFields.map(indent)] : []),
      ...(f.tpgAttributes.length ? ['  tpgs[].attributes:', ...f.tpgAttributes.map(indent)] : []),
      ...(f.tpgParameters.length ? ['  tpgs[].parameters:', ...f.tpgParameters.map(indent)] : []),
      ...(f.aclAttributes.length ? ['  tpgs[].node_acls[].attributes:', ...f.aclAttributes.map(indent)] : []),
      '',
    ]),
  ].join('\n');
  return manPage('tsiod', 'the tsio SCSI target daemon (iSCSI, vhost-user-scsi, loopback)', [
    ['SYNOPSIS', synopsis.replace(/^usage: /, '')],
    ['DESCRIPTION', 'tsiod serves SCSI logical units from backstores (RAM, files, block devices, SCSI pass-through) over\niSCSI, vhost-user-scsi and an in-process loopback, from a declarative configuration, and changes live\nthrough its control socket (tcli(8)).'],
    ['OPTIONS', options.map((l) => l.replace(/^ {2}/, '')).join('\n')],
    ['SYSTEMD', 'Under systemd (Type=notify) tsiod sends READY=1 once every portal and socket listens, RELOADING=1 and\nREADY=1 around a reload (SIGHUP, or tcli reload from ExecReload=), STOPPING=1 on shutdown. When stderr is\nthe journal (JOURNAL_STREAM), each line carries its syslog priority, so journalctl -p warning shows\nwarnings and worse. Refused logins and every configuration change made through the control socket are\nlogged at notice level with who (uid, pid, program) and what. The unit file is packaging/tsiod.service.'],
    ['CONFIGURATION', config],
    ['FILES', '/etc/tsio/saveconfig.yaml   the saved configuration (tcli saveconfig), with backups beside it\n/run/tsio/control.sock      the control socket\n/var/lib/tsio/pr/           persistent reservations registered with APTPL'],
    ['SEE ALSO', 'tcli(8), systemd.service(5), targetcli(8)'],
  ]);
}

/** bash completion: tcli completes the line itself (tcli --complete), from the daemon's tree and its tables. */
export function bashCompletion(): string {
  const verbs = VERBS.map((v) => v.name).join(' ');
  return `# bash completion for tcli (generated from tcli's command tables; tsio ${tsioVersion()})
_tcli() {
  local line=\${COMP_LINE:0:$COMP_POINT}
  local cur=\${line##*[[:space:]]}
  local IFS=$'\\n' cands
  case "$cur" in
    -*) cands=($(IFS=' '; compgen -W "--control --json --file --version --help" -- "$cur")) ;;
    *) cands=($(tcli --complete "$line" 2>/dev/null)) ;;
  esac
  if [ \${#cands[@]} -eq 0 ] && [[ "$line" =~ ^[^[:space:]]+[[:space:]]+[^[:space:]]*$ ]]; then
    cands=($(IFS=' '; compgen -W "${verbs}" -- "$cur"))
  fi
  # bash replaces only what follows the last = or : of the word (COMP_WORDBREAKS); IQNs hold colons.
  local keep=\${cur%"\${cur##*[=:]}"}
  COMPREPLY=("\${cands[@]#"$keep"}")
  [[ \${#COMPREPLY[@]} -eq 1 && "\${COMPREPLY[0]}" != */ && "\${COMPREPLY[0]}" != *= ]] && COMPREPLY[0]+=' '
}
complete -o nospace -F _tcli tcli
`;
}

export function writeDocs(outDir: string): string[] {
  const files: [string, string][] = [
    [join(outDir, 'man', 'tsiod.8'), tsiodPage()],
    [join(outDir, 'man', 'tcli.8'), tcliPage()],
    [join(outDir, 'completion', 'tcli'), bashCompletion()],
  ];
  for (const [f, text] of files) {
    mkdirSync(join(f, '..'), { recursive: true });
    writeFileSync(f, text);
  }
  return files.map(([f]) => f);
}

/** npm postinstall: for a global install, tcli's completion where bash-completion looks (PREFIX/share/...). */
export function installCompletion(): void {
  const prefix = process.env.npm_config_prefix;
  const src = join(__dirname, '..', 'completion', 'tcli');
  if (process.env.npm_config_global !== 'true' || !prefix || !existsSync(src)) return;
  const dir = join(prefix, 'share', 'bash-completion', 'completions');
  try {
    mkdirSync(dir, { recursive: true });
    copyFileSync(src, join(dir, 'tcli'));
  } catch (e) {
    process.stderr.write(`tsio: bash completion not installed: ${(e as Error).message}\n`);
  }
}

if (require.main === module) {
  const out = process.argv[2];
  if (!out) {
    process.stderr.write('usage: gen-docs OUTDIR\n');
    process.exit(2);
  }
  for (const f of writeDocs(out)) process.stdout.write(`${f}\n`);
}
