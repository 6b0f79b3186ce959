/**
 * Schema migrations on both databases: a store written by schema 1 opens
 * under the newest schema with nothing lost, and a migration that cannot
 * apply stops with a clear error and changes nothing.
 */
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations';
import { openRepository } from '../../src/store/open';
import type { PolicyRepository } from '../../src/store/repository';
import { chooseAttachment } from '../../src/store/model';
import { callerForToken, hashToken } from '../../src/store/tokens';
import { BACKENDS } from './backends';

const CONTENT = { egressPolicy: 'block' as const, allowedEndpoints: ['github.com'], lockdown: { enabled: false, detections: [] } };

describe.each(BACKENDS)('schema migrations on $name', (backend) => {
  /** A fresh database brought to schema 1 only. */
  async function atSchemaOne(): Promise<{ repository: PolicyRepository; spec: string }> {
    const spec = await backend.fresh();
    const repository = await backend.openAt(spec, 1);
    expect(await repository.schemaVersion()).toBe(1);
    return { repository, spec };
  }

  it('schema 2 lowers organization and repository names, keeping policies, history, attachments and tokens', async () => {
    const { repository: v1, spec } = await atSchemaOne();
    await v1.createPolicy('Acme', 'build', CONTENT, 'token:old');
    await v1.updatePolicy('Acme', 'build', { ...CONTENT, egressPolicy: 'audit' }, 'token:old');
    await v1.attach('Acme', 'build', { kind: 'repository', repository: 'Web' }, 'token:old');
    await v1.attach('Acme', 'build', { kind: 'workflow', repository: 'Web', workflow: '.github/workflows/CI.yml' }, 'token:old');
    await v1.createToken({ id: 'old1', org: 'Acme', role: 'agent', description: 'pre-2 token', createdAt: new Date().toISOString() }, hashToken('rfg_old'));
    await v1.close();

    const v2 = await openRepository(spec);
    try {
      expect(await v2.schemaVersion()).toBe(MIGRATIONS.length);
      expect(await v2.getPolicy('Acme', 'build')).toBeUndefined();
      const policy = await v2.getPolicy('acme', 'build');
      expect(policy).toMatchObject({ org: 'acme', name: 'build', version: 2, egressPolicy: 'audit', allowedEndpoints: ['github.com'] });
      const history = await v2.history('acme', 'build');
      expect(history.map((v) => [v.version, v.policy.org, v.changes])).toEqual([
        [1, 'acme', ['created']],
        [2, 'acme', ['egress-policy block → audit']],
      ]);
      const attachments = await v2.listAttachments('acme');
      expect(attachments.map((a) => [a.scope.kind, a.scope.repository, a.scope.workflow])).toEqual([
        ['repository', 'web', undefined],
        ['workflow', 'web', '.github/workflows/CI.yml'], // file paths stay case-sensitive, as in git
      ]);
      const job = { org: 'acme', repository: 'web', workflow: '.github/workflows/CI.yml' };
      expect(chooseAttachment(job, await v2.attachmentsFor('acme', 'web', job.workflow, undefined))).toMatchObject({ policy: 'build', scope: { kind: 'workflow' } });
      expect(await callerForToken(v2, 'rfg_old')).toMatchObject({ org: 'acme', role: 'agent' });
    } finally {
      await v2.close();
    }
  });

  it('a migration that cannot carry data over says which rows, and changes nothing', async () => {
    const { repository: v1, spec } = await atSchemaOne();
    // schema 1 told these apart by case only; lowering would make each pair one
    await v1.createPolicy('Acme', 'build', CONTENT, 'token:a');
    await v1.createPolicy('acme', 'build', { ...CONTENT, allowedEndpoints: ['example.com'] }, 'token:b');
    await v1.createPolicy('acme', 'web', CONTENT, 'token:b');
    await v1.attach('acme', 'web', { kind: 'repository', repository: 'Web' }, 'token:b');
    await v1.attach('acme', 'web', { kind: 'repository', repository: 'web' }, 'token:b');
    await v1.close();

    await expect(openRepository(spec)).rejects.toThrow(
      'schema 2 cannot be applied, nothing was changed: policy build exists under 2 spellings of organization acme; ' +
        'organization acme has 2 attachments on the repository scope web that differ only in case (detach all but one)',
    );
    const again = await backend.openAt(spec, 1);
    try {
      expect(await again.schemaVersion()).toBe(1);
      expect((await again.getPolicy('Acme', 'build'))?.allowedEndpoints).toEqual(['github.com']);
      expect((await again.getPolicy('acme', 'build'))?.allowedEndpoints).toEqual(['example.com']);
      expect((await again.listAttachments('acme')).map((a) => a.scope.repository).sort()).toEqual(['Web', 'web']);
    } finally {
      await again.close();
    }
  });

  it('refuses a database of a newer schema than it knows', async () => {
    const spec = await backend.fresh();
    const repository = await openRepository(spec);
    await repository.close();
    // as if a newer ringfence had migrated it
    await backend.exec(spec, `INSERT INTO schema_migrations (version, applied_at) VALUES (${MIGRATIONS.length + 1}, 'later')`);
    await expect(openRepository(spec)).rejects.toThrow(`the database is at schema ${MIGRATIONS.length + 1}, newer than this ringfence knows (${MIGRATIONS.length}): run a newer ringfence`);
  });
});
