// The control API's media methods on a running tsiod: cartridges made and
// moved by the operator, a library's mail slot, discs changed; wrong paths
// and kinds refused with a message, the daemon serving on.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRpc, startTsiod } from './util/tsiod';

const dir = mkdtempSync(join(tmpdir(), 'tsio-ctl-media-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('media methods: cartridges, a drive, a library, a disc', async () => {
  mkdirSync(join(dir, 'tapes'));
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src', 'f'), 'x');
  execFileSync('genisoimage', ['-quiet', '-o', join(dir, 'a.iso'), join(dir, 'src')]);
  const d = await startTsiod(`storage_objects:
  - { name: t0, plugin: tape, dev: ${dir}/tapes }
  - { name: lib, plugin: changer, dev: ${dir}/tapes, drives: t1, slots: 2, cartridges: "LIB001" }
  - { name: t1, plugin: tape, dev: ${dir}/tapes }
  - { name: cd, plugin: optical }
`);
  const call = async (m: string, p: object) => {
    const r = await controlRpc(d.sock, m, p);
    if (r.error) throw new Error(r.error.message);
    return r.result;
  };
  try {
    const t0 = '/backstores/tape/t0';
    assert.deepEqual(await call('media.status', { path: t0 }), { cartridge: null, loaded: false, position: 0, prevented: false });
    await call('cartridges.create', { path: t0, barcode: 'NEW001', capacity: '8MiB' });
    assert.ok(existsSync(join(dir, 'tapes', 'NEW001.tape')));
    await assert.rejects(call('cartridges.create', { path: t0, barcode: 'NEW001' }), /EEXIST/);
    await assert.rejects(call('cartridges.create', { path: t0, barcode: 'bad name' }), /not a barcode/);
    assert.deepEqual(await call('cartridges.list', { path: t0 }), ['LIB001', 'NEW001']);
    await call('tape.load', { path: t0, barcode: 'NEW001' });
    assert.equal((await call('media.status', { path: t0 })).cartridge, 'NEW001');
    await assert.rejects(call('tape.load', { path: '/backstores/tape/t1', barcode: 'NEW001' }), /in another drive/);
    assert.deepEqual(await call('tape.unload', { path: t0 }), { cartridge: 'NEW001' });
    await assert.rejects(call('tape.unload', { path: t0 }), /empty/);
    // The library: its mail slot takes a cartridge from the shelf and gives it back.
    const lib = '/backstores/changer/lib';
    assert.deepEqual(await call('changer.import', { path: lib, barcodes: 'NEW001' }), { removed: [], inserted: ['NEW001'] });
    const st = await call('media.status', { path: lib });
    assert.deepEqual(st.elements.map((e: any) => [e.type, e.cartridge]), [['transport', null], ['import_export', 'NEW001'], ['drive', null], ['slot', 'LIB001'], ['slot', null]]);
    assert.deepEqual(st.shelf, []);
    assert.deepEqual(await call('changer.export', { path: lib }), { removed: ['NEW001'], inserted: [] });
    await assert.rejects(call('changer.import', { path: lib, barcodes: 'NOPE01' }), /no cartridge NOPE01/);
    // The disc.
    const cd = '/backstores/optical/cd';
    assert.deepEqual(await call('media.status', { path: cd }), { image: null, present: false, tray_open: false, prevented: false });
    await call('optical.insert', { path: cd, image: join(dir, 'a.iso') });
    assert.equal((await call('media.status', { path: cd })).present, true);
    await call('optical.eject', { path: cd });
    await assert.rejects(call('optical.insert', { path: cd, image: join(dir, 'missing.iso') }), /ENOENT/);
    // Wrong kinds and paths.
    await assert.rejects(call('optical.eject', { path: t0 }), /is not a CD\/DVD drive/);
    await assert.rejects(call('tape.load', { path: cd, barcode: 'NEW001' }), /is not a tape drive/);
    await assert.rejects(call('media.status', { path: '/backstores/tape/nope' }), /no storage object/);
    assert.equal((await controlRpc(d.sock, 'status', {})).result.storage_objects, 4, 'still serving');
  } finally {
    assert.equal(await d.stop(), 0);
  }
});
