/** Where the SQLite store's file goes: a directory that must exist, modes 0600/0700 for what ringfence makes. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareDatabaseFile, SqliteRepository } from '../../src/store/sqlite';

const mode = (file: string) => (fs.statSync(file).mode & 0o777).toString(8);

describe('SQLite database file', () => {
  it('makes the directory 0700 and the file 0600 when asked to (the default path), whatever the umask', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-sqlite-file-'));
    const file = path.join(base, 'var', 'lib', 'ringfence', 'store.db');
    const umask = process.umask(0);
    try {
      const repository = new SqliteRepository(file, { createDirectory: true });
      await repository.migrate();
      await repository.close();
    } finally {
      process.umask(umask);
    }
    expect([mode(path.dirname(file)), mode(file)]).toEqual(['700', '600']);
  });

  it('refuses a missing directory unless asked, and creates nothing', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-sqlite-file-'));
    expect(() => prepareDatabaseFile(path.join(base, 'typo', 'store.db'), false)).toThrow(`directory ${path.join(base, 'typo')} does not exist: create it (mode 0700) or give another sqlite:PATH`);
    expect(fs.readdirSync(base)).toEqual([]);
    fs.mkdirSync(path.join(base, 'store.db'));
    expect(() => prepareDatabaseFile(path.join(base, 'store.db'), false)).toThrow(`${path.join(base, 'store.db')} is a directory, not a database file`);
  });

  it('leaves an existing database file its mode', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-sqlite-file-'));
    const file = path.join(base, 'store.db');
    fs.writeFileSync(file, '');
    fs.chmodSync(file, 0o640);
    prepareDatabaseFile(file, false);
    expect(mode(file)).toBe('640');
  });
});
