/** Where the repository is, whether this runs compiled (dist/src/…) or from source (vitest). */
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
