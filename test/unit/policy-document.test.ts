/**
 * The policy document (src/policy/policy.ts) at the edges where a small bug
 * applies another policy than the file says, or names the wrong line: YAML
 * that is not one mapping, values of the wrong kind, strings in every YAML
 * form, duplicates written differently, problems found out of order. Every
 * case parses its own text.
 */
import { describe, expect, it } from 'vitest';
import { AUDIT_POLICY, parsePolicy, parsePolicyWithNotes, PolicyError, type Policy } from '../../src/policy/policy';

/** The problem lines of a refused policy, or the policy. */
const parsed = (text: string): string[] | Policy => {
  try {
    return parsePolicy(text, 'p.yml');
  } catch (error) {
    if (error instanceof PolicyError) return error.message.split('\n');
    throw error;
  }
};
const endpointsOf = (text: string): string[] => parsePolicy(text, 'p.yml').allowedEndpoints.map((e) => e.text);
const KNOWN = 'known: name, egress-policy, allowed-endpoints, lockdown-mode, disable-telemetry, disable-file-monitoring, disable-sudo, disable-sudo-and-containers';

describe('a document that is not one mapping', () => {
  it.each([
    // a second egress-policy would otherwise quietly win over the first
    ['egress-policy: audit\negress-policy: block\n', ['p.yml:2: YAML: Map keys must be unique']],
    // the first line of the YAML error only, where it was found
    ['egress-policy: [block\n', ['p.yml:2: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]']],
    ['# nothing yet\n', ['p.yml:1: the policy is empty: it needs at least egress-policy (docs/policy.md)']],
    ['---\n', ['p.yml:1: the policy is empty: it needs at least egress-policy (docs/policy.md)']],
    ['~\n', ['p.yml:1: the policy is empty: it needs at least egress-policy (docs/policy.md)']],
    ['# endpoints\n- a.test\n', ['p.yml:2: a policy is a mapping of egress-policy, allowed-endpoints, lockdown-mode']],
    ['block\n', ['p.yml:1: a policy is a mapping of egress-policy, allowed-endpoints, lockdown-mode']],
  ])('%j', (text, problems) => {
    expect(parsed(text)).toEqual(problems);
  });
});

describe('keys and the lines problems are named by', () => {
  it.each([
    // the value's own line, not its key's
    ['egress-policy:\n  deny\n', ["p.yml:2: egress-policy must be 'audit' or 'block', not 'deny'"]],
    // a key with no value at all (? key): its own line
    ['name: x\n? egress-policy\n', ["p.yml:2: egress-policy must be 'audit' or 'block', not ''"]],
    ['name: x\n? lockdown-mode\n', ['p.yml:2: lockdown-mode is a mapping with enabled and detections']],
    ['egress-policy: [block]\n', [`p.yml:1: egress-policy must be 'audit' or 'block', not '["block"]'`]],
    ['egress-policy: true\n', ["p.yml:1: egress-policy must be 'audit' or 'block', not 'true'"]],
    // a key that is not a string is shown as written, not as ''
    ['[egress-policy]: block\n', [`p.yml:1: unknown key '["egress-policy"]' (${KNOWN})`]],
    // two edits away from a long key is still its typo
    ['egres-polcy: block\n', [`p.yml:1: unknown key 'egres-polcy' (did you mean 'egress-policy'? ${KNOWN})`]],
    ['egress-policy: block\nlockdown-mode:\n  detectinos: [Reverse-Shell]\n', ["p.yml:3: unknown key 'lockdown-mode.detectinos' (did you mean 'detections'? known: enabled, detections)"]],
    ['lockdown-mode:\n  detections: [[Reverse-Shell], {Reverse-Shell: true}]\n', [
      `p.yml:2: unknown detection '["Reverse-Shell"]' (known: Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell)`,
      `p.yml:2: unknown detection '{"Reverse-Shell":true}' (known: Privileged-Container, Runner-Worker-Memory-Read, Reverse-Shell)`,
    ]],
  ])('%j', (text, problems) => {
    expect(parsed(text)).toEqual(problems);
  });

  it('lists problems by line, also when a list item that is no string comes after a bad entry', () => {
    expect(parsed('allowed-endpoints:\n  - bad..test\n  - 443\n  - [a.test]\negress-policy: deny\n')).toEqual([
      "p.yml:2: endpoint 'bad..test': empty label in 'bad..test'",
      "p.yml:3: each allowed endpoint is a string, not '443'",
      `p.yml:4: each allowed endpoint is a string, not '["a.test"]'`,
      "p.yml:5: egress-policy must be 'audit' or 'block', not 'deny'",
    ]);
  });
});

describe('name', () => {
  it.each(['npm-build', 'a', 'Build_2.x', `a${'b'.repeat(99)}`, '7'])('takes %j', (name) => {
    expect(parsePolicy(`name: ${name}\n`, 'p.yml').name).toBe(name);
  });

  it.each([
    ['name: my build\n', 'my build'],
    ['name: -build\n', '-build'],
    ['name: .hidden\n', '.hidden'],
    ['name: ../etc\n', '../etc'],
    [`name: a${'b'.repeat(100)}\n`, `a${'b'.repeat(100)}`],
    ['name:\n', ''],
    ['name: [a, b]\n', '["a","b"]'],
  ])('refuses %j', (text, name) => {
    expect(parsed(text)).toEqual([`p.yml:1: name '${name}' must be 1-100 letters, digits, '.', '_' or '-'`]);
  });
});

describe('allowed-endpoints in every YAML form', () => {
  it.each([
    ['allowed-endpoints: a.test b.test:80\n', ['a.test', 'b.test:80']],
    ['allowed-endpoints: "a.test b.test:80"\n', ['a.test', 'b.test:80']],
    ["allowed-endpoints: 'a.test, b.test:80'\n", ['a.test', 'b.test:80']],
    ['allowed-endpoints: a.test\n  b.test:80\n', ['a.test', 'b.test:80']],
    ['allowed-endpoints: >-\n  a.test\n  b.test:80\n', ['a.test', 'b.test:80']],
    ['allowed-endpoints: | # the tools\n  a.test # npm\n  b.test:80\n', ['a.test', 'b.test:80']],
    ['allowed-endpoints:\n  - a.test\n  - "b.test:80"\n  - |\n    c.test\n', ['a.test', 'b.test:80', 'c.test']],
    ['allowed-endpoints:\n', []],
  ])('%j', (text, endpoints) => {
    expect(endpointsOf(text)).toEqual(endpoints);
  });

  it.each([
    // each entry's own line, whatever the form
    ['egress-policy: block\nallowed-endpoints: >-\n a.test\n bad..test\n', 4],
    ['egress-policy: block\nallowed-endpoints: |2\n  a.test\n  bad..test\n', 4],
    ['egress-policy: block\nallowed-endpoints: a.test\n  bad..test\n', 3],
    ['egress-policy: block\nallowed-endpoints: "a.test\n  bad..test"\n', 3],
    ['egress-policy: block\nallowed-endpoints:\n  - a.test\n  - >\n    b.test\n    bad..test\n', 6],
  ])('names the line of a bad entry: %j', (text, line) => {
    expect(parsed(text)).toEqual([`p.yml:${line}: endpoint 'bad..test': empty label in 'bad..test'`]);
  });

  it.each([
    ['allowed-endpoints: 443\n', "not '443'"],
    ['allowed-endpoints: true\n', "not 'true'"],
    ['allowed-endpoints: {a.test: 443}\n', `not '{"a.test":443}'`],
  ])('refuses %j', (text, what) => {
    expect(parsed(text)).toEqual([`p.yml:1: allowed-endpoints is a block of endpoints or a list, ${what}`]);
  });
});

describe('duplicate endpoints', () => {
  it('keeps the first of entries that are the same endpoint however written', () => {
    const text = 'allowed-endpoints: >\n  10.0.0.0/8\n  10.0.0.0/8:443\n  [2001:db8::1]\n  2001:DB8:0::1\n  [2001:db8:0:0::1]:443\n  A.Test.\n  a.test:443\n';
    expect(endpointsOf(text)).toEqual(['10.0.0.0/8', '[2001:db8::1]', 'A.Test.']);
  });

  it('keeps entries that differ in port, prefix or pattern', () => {
    const text = 'allowed-endpoints: >\n  10.0.0.0/8\n  10.0.0.0/8:22\n  10.0.0.0/16\n  [::ffff:10.0.0.0/104]\n  a.test\n  a.test:80\n  *.a.test\n  x*.a.test\n';
    expect(endpointsOf(text)).toEqual(['10.0.0.0/8', '10.0.0.0/8:22', '10.0.0.0/16', '[::ffff:10.0.0.0/104]', 'a.test', 'a.test:80', '*.a.test', 'x*.a.test']);
  });
});

describe('Harden-Runner boolean inputs as action inputs write them', () => {
  it.each(['disable-sudo', 'disable-sudo-and-containers'])('%s: "false" (a string) is accepted', (key) => {
    expect(parsePolicyWithNotes(`egress-policy: block\n${key}: "false"\n`, 'p.yml')).toEqual({ policy: { egressPolicy: 'block', allowedEndpoints: [], lockdown: { enabled: false, detections: [] } }, notes: [] });
  });

  it.each(['"yes"', '1', '[true]'])('disable-telemetry: %s is refused', (value) => {
    expect(parsed(`disable-telemetry: ${value}\n`)).toEqual(['p.yml:1: disable-telemetry must be true or false']);
  });
});

describe('what a refused policy and no policy are', () => {
  it('a PolicyError carries the source, each problem by line, and its name', () => {
    expect.assertions(4);
    try {
      parsePolicy('egress-policy: deny\nlockdown-mode: on\n', 'ci.yml');
    } catch (error) {
      expect(error).toBeInstanceOf(PolicyError);
      const { name, source, problems, message } = error as PolicyError;
      expect({ name, source }).toEqual({ name: 'PolicyError', source: 'ci.yml' });
      expect(problems).toEqual([
        { line: 1, message: "egress-policy must be 'audit' or 'block', not 'deny'" },
        { line: 2, message: 'lockdown-mode is a mapping with enabled and detections' },
      ]);
      expect(message).toBe("ci.yml:1: egress-policy must be 'audit' or 'block', not 'deny'\nci.yml:2: lockdown-mode is a mapping with enabled and detections");
    }
  });

  it('names text without a source <policy>', () => {
    expect(() => parsePolicy('egress-policy: deny\n')).toThrow("<policy>:1: egress-policy must be 'audit' or 'block', not 'deny'");
    expect(parsePolicyWithNotes('egress-policy: block\ndisable-telemetry: true\n').notes).toEqual([expect.stringMatching(/^<policy>:2: disable-telemetry is accepted/)]);
  });

  it('the audit policy a job gets when none applies allows nothing and enables no lockdown', () => {
    expect(AUDIT_POLICY).toEqual(parsePolicy('egress-policy: audit\n', 'p.yml'));
  });
});
