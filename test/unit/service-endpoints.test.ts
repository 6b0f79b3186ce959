/**
 * The endpoints every job may reach whatever its policy says (the CI
 * service's own): the default list, `none`, and a file of one endpoint a
 * line. What is allowed here is allowed to every job, so the list is pinned.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseEndpoint } from '../../src/policy/endpoint';
import { defaultServiceEndpoints, loadServiceEndpoints, parseServiceEndpoints } from '../../src/jobs/service-endpoints';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-service-endpoints-'));

describe('service endpoints', () => {
  it('default: exactly the hosts GitHub operates, on 443, and no broad wildcard of a shared cloud', () => {
    expect(defaultServiceEndpoints()).toEqual([
      'github.com:443',
      'api.github.com:443',
      'codeload.github.com:443',
      '*.actions.githubusercontent.com:443',
      'objects.githubusercontent.com:443',
      'productionresultssa*.blob.core.windows.net:443',
    ]);
    expect(loadServiceEndpoints('default')).toEqual(defaultServiceEndpoints().map((entry) => parseEndpoint(entry)));
    expect(loadServiceEndpoints()).toEqual(loadServiceEndpoints('default'));
  });

  it('none: no endpoint at all', () => {
    expect(loadServiceEndpoints('none')).toEqual([]);
  });

  it('a file: one endpoint a line, # comments and blank lines left out', () => {
    const file = path.join(work, 'service.txt');
    fs.writeFileSync(file, '# the CI server\nci.example.test:443\n\n10.0.0.0/8:22\n');
    expect(loadServiceEndpoints(file)).toEqual([parseEndpoint('ci.example.test:443'), parseEndpoint('10.0.0.0/8:22')]);
  });

  it('a bad entry is refused with its file and line, as RF_SERVICE_ENDPOINTS', () => {
    const file = path.join(work, 'bad.txt');
    fs.writeFileSync(file, 'ok.example.test:443\nnot a host:99999\n');
    let error: { message: string; code?: string } | undefined;
    try {
      loadServiceEndpoints(file);
    } catch (caught) {
      error = caught as typeof error;
    }
    expect(error?.code).toBe('RF_SERVICE_ENDPOINTS');
    expect(error?.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2: `));
    expect(parseServiceEndpoints('a.test:443\n', 'inline')).toEqual([parseEndpoint('a.test:443')]);
  });

  it('an unreadable file is one line naming it, as RF_SERVICE_ENDPOINTS', () => {
    const missing = path.join(work, 'missing.txt');
    let error: { message: string; code?: string } | undefined;
    try {
      loadServiceEndpoints(missing);
    } catch (caught) {
      error = caught as typeof error;
    }
    expect(error?.code).toBe('RF_SERVICE_ENDPOINTS');
    expect(error?.message).toBe(`cannot read service endpoints ${missing}: ENOENT: no such file or directory, open '${missing}'`);
  });
});
