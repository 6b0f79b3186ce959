/** docs/events.md describes exactly what the code writes: every kind, every field. */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JOB_EVENT_KINDS } from '../../src/jobs/job-events';
import { EVENTS_DOC, fieldPaths, parseEventsDoc, undocumented, unitBuiltJob } from './events-doc';

const doc = () => parseEventsDoc(fs.readFileSync(EVENTS_DOC, 'utf8'));

describe('docs/events.md', () => {
  it('documents the kinds the code can write, and no other', () => {
    expect([...doc().kinds.keys()].sort()).toEqual([...JOB_EVENT_KINDS].sort());
    expect([...new Set(unitBuiltJob().map((e) => e.kind))].sort()).toEqual([...JOB_EVENT_KINDS].sort());
  });

  it('lists every field a unit-built job writes', () => {
    expect(undocumented(doc(), unitBuiltJob())).toEqual([]);
  });

  it('lists no field the code does not write', () => {
    const { envelope, kinds } = doc();
    const events = unitBuiltJob();
    const written = new Set(events.flatMap((e) => fieldPaths(e)));
    expect([...envelope].filter((field) => !written.has(field))).toEqual([]);
    const phantom: string[] = [];
    for (const [kind, fields] of kinds) {
      const ofKind = new Set(events.filter((e) => e.kind === kind).flatMap((e) => fieldPaths(e)));
      for (const field of fields) if (!ofKind.has(field)) phantom.push(`${kind}: ${field}`);
    }
    expect(phantom).toEqual([]);
  });

  it('the check bites: a field or a kind the doc does not list is found', () => {
    const written = unitBuiltJob();
    const extra = [{ ...written[0], surprise: 1 }, { ...written[1], kind: 'mystery' }];
    expect(undocumented(doc(), extra)).toEqual(['job: surprise', 'mystery: (kind)']);
  });
});
