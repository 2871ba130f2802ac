// tsiod as a service: --check checks what a start needs of the host and a
// start that cannot happen says why in one line per problem, at its YAML path
// and line; the sd_notify protocol (READY=1 only once the portal listens,
// RELOADING=1/READY=1 around SIGHUP's reload, STOPPING=1); log lines with
// syslog priorities when stderr is the journal; refused logins and control
// changes at notice level, naming who and what. (test/systemd-guest.test.ts
// runs the same under a real systemd.)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, tcli, TSIOD } from './util/tsiod';
import { RawInitiator } from './util/iscsi-initiator';

const dirs: string[] = [];
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'tsiod-service-'));
  dirs.push(d);
  return d;
}

async function busyPort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  servers.push(s);
  return (s.address() as { port: number }).port;
}

const IQN = 'iqn.2026-11.org.tsio:service';

test('--check finds what a start would trip on, each at its YAML path and line; a start says the same, without a stack', async () => {
  const dir = tmp();
  const port = await busyPort();
  writeFileSync(join(dir, 'plain-file'), '');
  const cfg = join(dir, 'host.yaml');
  writeFileSync(
    cfg,
    [
      'storage_objects:',
      `  - { name: f0, plugin: fileio, dev: ${join(dir, 'no-such-dir', 'f0.img')}, size: 1MiB }`,
      `  - { name: b0, plugin: block, dev: ${join(dir, 'plain-file')} }`,
      'targets:',
      '  - fabric: iscsi',
      `    wwn: ${IQN}`,
      '    tpgs:',
      '      - tag: 1',
      `        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]`,
      '  - fabric: vhost',
      '    wwn: naa.5001405000000091',
      `    tpgs: [ { tag: 1, socket: ${join(dir, 'plain-file', 'v.sock')} } ]`,
      '',
    ].join('\n'),
  );
  const expected = [
    new RegExp(`host\\.yaml:2: storage_objects\\[0\\]\\.dev: dev .*f0\\.img: directory .*no-such-dir does not exist`),
    new RegExp(`host\\.yaml:3: storage_objects\\[1\\]\\.dev: dev .*plain-file is not a block device \\(a file: use the fileio plugin\\)`),
    new RegExp(`host\\.yaml:9: targets\\[0\\]\\.tpgs\\[0\\]\\.portals\\[0\\]: portal 127\\.0\\.0\\.1:${port} is already in use by another program`),
    new RegExp(`host\\.yaml:12: targets\\[1\\]\\.tpgs\\[0\\]\\.socket: socket .*plain-file/v\\.sock: .*plain-file is not a directory`),
  ];
  const check = spawnSync(process.execPath, [TSIOD, '--config', cfg, '--check'], { encoding: 'utf8' });
  assert.equal(check.status, 1, check.stdout);
  for (const re of expected) assert.match(check.stderr, re);
  const start = spawnSync(process.execPath, [TSIOD, '--config', cfg, '--control', join(dir, 'c.sock'), '--state-dir', join(dir, 'state')], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(start.status, 1);
  assert.match(start.stderr, /tsio error: cannot start:/);
  for (const re of expected) assert.match(start.stderr, re);
  assert.doesNotMatch(start.stderr, /^\s+at /m, 'no stack trace');
  // A good file still passes, and says what it describes.
  writeFileSync(cfg, `storage_objects:\n  - { name: f0, plugin: fileio, dev: ${join(dir, 'f0.img')}, size: 1MiB }\n`);
  const good = spawnSync(process.execPath, [TSIOD, '--config', cfg, '--check'], { encoding: 'utf8' });
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /configuration ok: 1 storage objects, 0 targets/);
});

/** A unix datagram socket that prints what systemd would receive, and whether the portal listened then. */
const NOTIFY_LISTENER = `
import socket, sys
path, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print("BOUND", flush=True)
while True:
    msg = s.recv(4096).decode()
    c = socket.socket()
    try:
        c.connect(("127.0.0.1", port)); state = "listening"
    except OSError:
        state = "closed"
    c.close()
    print("MSG", state, msg.replace("\\n", " "), flush=True)
    if "STOPPING=1" in msg:
        break
`;

test('sd_notify: READY=1 only once the portal listens; SIGHUP reloads the saved file between RELOADING=1 and READY=1; STOPPING=1', async () => {
  const dir = tmp();
  const port = await freePort();
  const notify = join(dir, 'notify.sock');
  const py = spawn('python3', ['-c', NOTIFY_LISTENER, notify, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let got = '';
  py.stdout!.on('data', (d) => (got += d));
  const until = async (re: RegExp) => {
    for (let i = 0; i < 300 && !re.test(got); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(got, re);
  };
  await until(/BOUND/);
  const save = join(dir, 'save.yaml');
  const config = (luns: string) => `storage_objects:\n  - { name: r0, plugin: rd_mcp, size: 1MiB }\n  - { name: r1, plugin: rd_mcp, size: 1MiB }\ntargets:\n  - { fabric: iscsi, wwn: ${IQN}, tpgs: [ { tag: 1, portals: [ { ip_address: 127.0.0.1, port: ${port} } ], luns: [ ${luns} ] } ] }\n`;
  writeFileSync(save, config('{ index: 0, storage_object: /backstores/rd_mcp/r0 }'));
  const d = spawn(process.execPath, [TSIOD, '--config', save, '--saveconfig', save, '--control', join(dir, 'c.sock'), '--state-dir', join(dir, 'state')], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: notify } });
  // Taken now: tsiod may be gone by the time the test waits for it.
  const exited = once(d, 'exit');
  let log = '';
  d.stderr!.on('data', (x) => (log += x));
  try {
    await until(/MSG \S+ READY=1/);
    assert.match(got, /MSG listening READY=1 STATUS=serving 2 storage objects, 1 targets MAINPID=\d+/);
    // The saved file, edited: SIGHUP applies it live.
    writeFileSync(save, config('{ index: 0, storage_object: /backstores/rd_mcp/r0 }, { index: 1, storage_object: /backstores/rd_mcp/r1 }'));
    d.kill('SIGHUP');
    await until(/RELOADING=1 MONOTONIC_USEC=\d+[^\n]*\n[^\n]*READY=1/);
    const luns = JSON.parse(tcli(join(dir, 'c.sock'), ['--json', `/iscsi/${IQN}/tpg1`, 'info']).stdout).tpg.luns;
    assert.deepEqual(luns.map((l: { index: number }) => l.index), [0, 1]);
    assert.match(log, /tsio notice: control: SIGHUP: reload/);
    d.kill('SIGTERM');
    await until(/STOPPING=1/);
    const [code] = await exited;
    assert.equal(code, 0, log);
  } finally {
    d.kill('SIGKILL');
    py.kill();
  }
});

test('under the journal, lines carry syslog priorities; refused logins and control changes are notices naming who and what', async () => {
  const dir = tmp();
  const port = await freePort();
  const cfg = join(dir, 'c.yaml');
  writeFileSync(
    cfg,
    [
      'storage_objects: [ { name: r0, plugin: rd_mcp, size: 1MiB } ]',
      'targets:',
      `  - { fabric: iscsi, wwn: ${IQN}, tpgs: [ { tag: 1, attributes: { authentication: false }, portals: [ { ip_address: 127.0.0.1, port: ${port} } ], luns: [ { index: 0, storage_object: /backstores/rd_mcp/r0 } ], node_acls: [ { node_wwn: iqn.2026-11.org.example:allowed } ] } ] }`,
      `  - { fabric: iscsi, wwn: ${IQN}-demo, tpgs: [ { tag: 1, attributes: { generate_node_acls: true, authentication: false }, portals: [ { ip_address: 127.0.0.1, port: ${port} } ], luns: [ { index: 0, storage_object: /backstores/rd_mcp/r0 } ] } ] }`,
      '',
    ].join('\n'),
  );
  const logFile = join(dir, 'journal');
  const fd = openSync(logFile, 'w');
  const st = fstatSync(fd);
  const sock = join(dir, 'c.sock');
  const d = spawn(process.execPath, [TSIOD, '--config', cfg, '--control', sock, '--state-dir', join(dir, 'state')], { stdio: ['ignore', fd, fd], env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` } });
  const exited = once(d, 'exit');
  closeSync(fd);
  const text = () => readFileSync(logFile, 'utf8');
  try {
    for (let i = 0; i < 300 && !/ready:/.test(text()); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(text(), /^<6>tsio info: ready: /m);
    assert.match(text(), /^<4>tsio warn: \/iscsi\/iqn\.2026-11\.org\.tsio:service-demo\/tpg1 is in demo mode/m);
    // A change through the control socket: who (uid, pid, program) and what.
    assert.equal(tcli(sock, ['/backstores/rd_mcp', 'create', 'r9', '1MiB']).status, 0);
    assert.equal(tcli(sock, [`/iscsi/${IQN}/tpg1/acls/iqn.2026-11.org.example:allowed`, 'set', 'auth', 'userid=u1', 'password=sekret123456']).status, 0);
    // Refused logins: an unknown target, and an initiator in no ACL.
    for (const [target, init] of [['iqn.2026-11.org.tsio:nobody', 'iqn.2026-11.org.example:x'], [IQN, 'iqn.2026-11.org.example:stranger']]) {
      const i = await RawInitiator.connect(port);
      try {
        await i.login(target, {}, init).catch(() => {});
      } finally {
        i.close();
      }
    }
    for (let i = 0; i < 50 && !/stranger/.test(text()); i++) await new Promise((r) => setTimeout(r, 100));
    const t = text();
    assert.match(t, /^<5>tsio notice: control: uid 0 \(root\), pid \d+ \(tcli --control \S+ \/backstores\/rd_mcp create r9 1MiB\): storage_objects\.create \{"plugin":"rd_mcp","name":"r9","fields":\{"size":"1MiB"\}\}$/m);
    assert.match(t, /^<5>tsio notice: control: .*acls\.set .*"auth":\{"userid":"u1","password":"\*\*\*"\}/m);
    assert.doesNotMatch(t, /sekret123456/, 'secrets stay out of the log');
    assert.match(t, /^<5>tsio notice: iscsi: login of iqn\.2026-11\.org\.example:x from 127\.0\.0\.1:\d+ refused \(0x0203\): no target iqn\.2026-11\.org\.tsio:nobody on portal 127\.0\.0\.1:\d+$/m);
    assert.match(t, /^<5>tsio notice: iscsi: login of iqn\.2026-11\.org\.example:stranger from 127\.0\.0\.1:\d+ refused \(0x0202\): the initiator is in no ACL of iqn\.2026-11\.org\.tsio:service/m);
    // Every line has its priority, the way journald files it.
    for (const line of t.split('\n').filter((l) => l !== '')) assert.match(line, /^<[3-7]>tsio (error|warn|notice|info|debug): /, line);
  } finally {
    d.kill('SIGTERM');
    await exited;
  }
  mkdirSync(join(dir, 'x'), { recursive: true });
});
