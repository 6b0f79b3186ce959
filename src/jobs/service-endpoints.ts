/**
 * Endpoints every job may reach whatever its policy says: the CI service's
 * own (checkout, artifacts, caches, OIDC tokens). Configurable with
 * `--service-endpoints FILE` (one endpoint per line, `#` comments) or `none`.
 *
 * Kept to hosts GitHub operates. Broad wildcards of shared clouds (such as
 * `*.blob.core.windows.net`) are deliberately absent: anyone can own a storage
 * account there, so they would be an exfiltration channel for every job.
 */
import fs from 'node:fs';
import { parseEndpoint, parseEndpointList, type Endpoint } from '../policy/endpoint';
import { RingfenceError } from '../util/errors';

/**
 * The default list. A function rather than a module constant so that
 * mutation testing judges each entry (a constant is built once, at load).
 */
export function defaultServiceEndpoints(): string[] {
  return [
    'github.com:443',
    'api.github.com:443',
    'codeload.github.com:443',
    '*.actions.githubusercontent.com:443',
    'objects.githubusercontent.com:443',
    'productionresultssa*.blob.core.windows.net:443',
  ];
}

/** Parses a service endpoint list (file text); names the file and line of a bad entry. */
export function parseServiceEndpoints(text: string, source: string): Endpoint[] {
  const { endpoints, problems } = parseEndpointList(text, source);
  if (problems.length) throw new RingfenceError(problems[0], 'RF_SERVICE_ENDPOINTS');
  return endpoints;
}

/** `default`, `none`, or a file path. */
export function loadServiceEndpoints(spec = 'default'): Endpoint[] {
  if (spec === 'none') return [];
  if (spec === 'default') return defaultServiceEndpoints().map((entry) => parseEndpoint(entry));
  let text: string;
  try {
    text = fs.readFileSync(spec, 'utf8');
  } catch (error) {
    throw new RingfenceError(`cannot read service endpoints ${spec}: ${(error as Error).message}`, 'RF_SERVICE_ENDPOINTS');
  }
  return parseServiceEndpoints(text, spec);
}
