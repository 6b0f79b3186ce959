/**
 * What a job reached, for the end-of-job summary (terminal and Markdown).
 * Blocked lines come first, whatever they are (connections or DNS names),
 * then lockdown detections, DNS failures, and the rest. The counts are
 * counted from the same events the events file gets, so they agree with it.
 */
import { signalName, type DetectionJobEvent, type DnsJobEvent, type JobCounts, type NetworkJobEvent, type PolicyRef, type Verdict } from './job-events';
import { describeTargetAfterKill } from '../enforce/resume';

interface EndpointRow {
  endpoint: string;
  port: number;
  protocol: string;
  verdict: Verdict;
  count: number;
  processes: Set<string>;
}

interface NameRow {
  name: string;
  verdict: Verdict;
  count: number;
  processes: Set<string>;
}

interface FailureRow {
  name: string;
  /** SERVFAIL, REFUSED…, and why when the proxy could not get an answer (timeout, upstream unreachable). */
  reason: string;
  count: number;
  processes: Set<string>;
}

const VERDICT_ORDER: Record<Verdict, number> = { blocked: 0, audited: 1, allowed: 2 };

/** Answers that are no answer: the job's lookup failed (NXDOMAIN is an answer). */
const FAILURE_RCODES = new Set(['SERVFAIL', 'REFUSED', 'FORMERR', 'NOTIMP']);

/** How summaries and stderr name the policy: "curl-test v3", "demo-build", "none (audit)". */
export function policyDisplay(policy: PolicyRef): string {
  if (policy.name === null) return 'none (audit)';
  return policy.version !== undefined ? `${policy.name} v${policy.version}` : policy.name;
}

/** Why a DNS event is a failure, or undefined when the job got an answer. */
export function dnsFailure(event: DnsJobEvent): string | undefined {
  if (event.error) return `${event.rcode}: ${event.error}`;
  return FAILURE_RCODES.has(event.rcode) ? event.rcode : undefined;
}

const processList = (processes: Set<string>) => [...processes].join(', ');

export class JobSummary {
  private readonly endpoints = new Map<string, EndpointRow>();
  private readonly names = new Map<string, NameRow>();
  private readonly failures = new Map<string, FailureRow>();
  private readonly detections: DetectionJobEvent[] = [];
  private readonly tally = { dns: 0, network: 0, blocked: 0, audited: 0, detections: 0 };

  addDetection(event: DetectionJobEvent): void {
    this.detections.push(event);
    this.tally.detections++;
  }

  addNetwork(event: NetworkJobEvent): void {
    const endpoint = event.domain ? `${event.domain} (${event.ip})` : event.ip;
    const key = `${endpoint}|${event.port}|${event.protocol}|${event.verdict}`;
    let row = this.endpoints.get(key);
    if (!row) {
      row = { endpoint, port: event.port, protocol: event.protocol, verdict: event.verdict, count: 0, processes: new Set() };
      this.endpoints.set(key, row);
    }
    row.count += event.count;
    if (event.process) row.processes.add(event.process.exe);
    this.tally.network += event.count;
    this.countVerdict(event.verdict, event.count);
  }

  addDns(event: DnsJobEvent): void {
    this.tally.dns++;
    this.countVerdict(event.verdict, 1);
    const failure = dnsFailure(event);
    if (failure !== undefined) {
      const key = `${event.name}|${failure}`;
      const row = this.failures.get(key) ?? { name: event.name, reason: failure, count: 0, processes: new Set() };
      row.count++;
      if (event.process) row.processes.add(event.process.exe);
      this.failures.set(key, row);
      return;
    }
    const key = `${event.name}|${event.verdict}`;
    const row = this.names.get(key) ?? { name: event.name, verdict: event.verdict, count: 0, processes: new Set() };
    row.count++;
    if (event.process) row.processes.add(event.process.exe);
    this.names.set(key, row);
  }

  private countVerdict(verdict: Verdict, count: number): void {
    if (verdict === 'blocked') this.tally.blocked += count;
    else if (verdict === 'audited') this.tally.audited += count;
  }

  get blocked(): number {
    return this.tally.blocked;
  }

  /** What the `job` `completed` event says, but processes (counted by the job). */
  counts(): Omit<JobCounts, 'processes'> {
    return { ...this.tally };
  }

  private detectionLine(d: DetectionJobEvent): string {
    const who = d.process ? `${d.process.exe} (pid ${d.process.pid})` : 'a process';
    let target: string;
    if (d.detection === 'Runner-Worker-Memory-Read') {
      const t = d.target as { pid: number; exe?: string };
      target = ` reading the memory of ${t.exe ?? 'process'} (pid ${t.pid})`;
    } else if (d.detection === 'Agent-Tamper') {
      const t = d.target as { pid: number; signal?: number; ptraceRequest?: number; syscall?: string; refused?: boolean };
      const how =
        t.signal !== undefined ? `sending ${signalName(t.signal)} to` : t.ptraceRequest !== undefined ? 'ptrace-attaching' : t.syscall !== undefined ? `${t.syscall} aimed at` : 'tampering with';
      target = ` ${how} ringfence (pid ${t.pid})${t.refused ? ', refused' : ''}`;
    } else if (d.detection === 'Reverse-Shell') {
      const t = d.target as { ip: string; port: number; fd: number };
      target = d.relay ? ` whose fd ${t.fd} goes through ${d.relay.exe} (pid ${d.relay.pid}) to ${t.ip}:${t.port}` : ` with fd ${t.fd} a socket to ${t.ip}:${t.port}`;
    } else if (d.detection === 'Cgroup-Escape') {
      target = ` moving out of the job's cgroup (to cgroup ${(d.target as { cgroupId: number }).cgroupId})`;
    } else {
      target = ` in a container with capabilities ${(d.target as { capabilities: string }).capabilities}`;
    }
    return `${d.action.toUpperCase()} ${d.detection}: ${who}${target} (via ${d.via})${describeTargetAfterKill(d.targetAfterKill)}`;
  }

  private sortedEndpoints(): EndpointRow[] {
    return [...this.endpoints.values()].sort((a, b) => VERDICT_ORDER[a.verdict] - VERDICT_ORDER[b.verdict] || b.count - a.count || a.endpoint.localeCompare(b.endpoint));
  }

  private sortedNames(): NameRow[] {
    return [...this.names.values()].sort((a, b) => VERDICT_ORDER[a.verdict] - VERDICT_ORDER[b.verdict] || a.name.localeCompare(b.name));
  }

  private sortedFailures(): FailureRow[] {
    return [...this.failures.values()].sort((a, b) => a.name.localeCompare(b.name) || a.reason.localeCompare(b.reason));
  }

  private sortedDetections(): DetectionJobEvent[] {
    return [...this.detections].sort((a, b) => (a.action === b.action ? 0 : a.action === 'killed' ? -1 : 1));
  }

  renderText(header: string): string {
    const endpointLine = (row: EndpointRow) =>
      `  ${row.verdict.toUpperCase().padEnd(8)} ${`${row.endpoint}:${row.port}/${row.protocol}`.padEnd(48)} ×${String(row.count).padEnd(5)} ${processList(row.processes)}`;
    const nameLine = (row: NameRow) => `  ${row.verdict.toUpperCase().padEnd(8)} DNS ${row.name} ×${row.count}${row.processes.size ? ` ${processList(row.processes)}` : ''}`;
    const endpoints = this.sortedEndpoints();
    const names = this.sortedNames().filter((n) => n.verdict !== 'allowed');
    const lines = [header];
    lines.push(...endpoints.filter((r) => r.verdict === 'blocked').map(endpointLine));
    lines.push(...names.filter((r) => r.verdict === 'blocked').map(nameLine));
    for (const d of this.sortedDetections()) lines.push(`  ${this.detectionLine(d)}`);
    for (const row of this.sortedFailures()) lines.push(`  ${'FAILED'.padEnd(8)} DNS ${row.name} ×${row.count} (${row.reason})${row.processes.size ? ` ${processList(row.processes)}` : ''}`);
    if (endpoints.length === 0) lines.push('  no outbound connections');
    lines.push(...endpoints.filter((r) => r.verdict === 'audited').map(endpointLine));
    lines.push(...names.filter((r) => r.verdict === 'audited').map(nameLine));
    lines.push(...endpoints.filter((r) => r.verdict === 'allowed').map(endpointLine));
    return lines.join('\n');
  }

  renderMarkdown(title: string, facts: string[]): string {
    const out = [`# ${title}`, '', ...facts.map((f) => `- ${f}`), ''];
    const endpointTable = (rows: EndpointRow[]) => [
      '| verdict | endpoint | port | protocol | count | processes |',
      '|---|---|---|---|---|---|',
      ...rows.map((row) => `| ${row.verdict} | ${row.endpoint} | ${row.port} | ${row.protocol} | ${row.count} | ${processList(row.processes)} |`),
    ];
    const nameTable = (rows: NameRow[]) => ['| verdict | name | queries | processes |', '|---|---|---|---|', ...rows.map((row) => `| ${row.verdict} | ${row.name} | ${row.count} | ${processList(row.processes)} |`)];
    const endpoints = this.sortedEndpoints();
    const names = this.sortedNames();
    const blockedEndpoints = endpoints.filter((r) => r.verdict === 'blocked');
    const blockedNames = names.filter((r) => r.verdict === 'blocked');
    if (blockedEndpoints.length || blockedNames.length) {
      out.push('## Blocked', '');
      if (blockedEndpoints.length) out.push(...endpointTable(blockedEndpoints), '');
      if (blockedNames.length) out.push(...nameTable(blockedNames), '');
    }
    if (this.detections.length) {
      out.push('## Lockdown detections', '');
      for (const d of this.sortedDetections()) out.push(`- ${this.detectionLine(d)}`);
      out.push('');
    }
    const failures = this.sortedFailures();
    if (failures.length) {
      out.push('## DNS failures', '', '| name | failure | queries | processes |', '|---|---|---|---|');
      for (const row of failures) out.push(`| ${row.name} | ${row.reason} | ${row.count} | ${processList(row.processes)} |`);
      out.push('');
    }
    const otherEndpoints = endpoints.filter((r) => r.verdict !== 'blocked');
    if (endpoints.length === 0) out.push('## Endpoints', '', 'No outbound connections.', '');
    else if (otherEndpoints.length) out.push('## Endpoints', '', ...endpointTable(otherEndpoints), '');
    const otherNames = names.filter((r) => r.verdict !== 'blocked');
    if (otherNames.length) out.push('## DNS', '', ...nameTable(otherNames), '');
    return out.join('\n').replace(/\n+$/, '') + '\n';
  }
}
