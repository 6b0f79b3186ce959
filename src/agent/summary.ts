/** What a job reached, for the end-of-job summary (terminal and Markdown). */
import type { DetectionJobEvent, DnsJobEvent, NetworkJobEvent, Verdict } from './job-events';
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
}

const VERDICT_ORDER: Record<Verdict, number> = { blocked: 0, audited: 1, allowed: 2 };

export class JobSummary {
  private readonly endpoints = new Map<string, EndpointRow>();
  private readonly names = new Map<string, NameRow>();
  private readonly detections: DetectionJobEvent[] = [];

  addDetection(event: DetectionJobEvent): void {
    this.detections.push(event);
  }

  private detectionLine(d: DetectionJobEvent): string {
    const who = d.process ? `${d.process.exe} (pid ${d.process.pid})` : 'a process';
    let target: string;
    if (d.detection === 'Runner-Worker-Memory-Read') {
      const t = d.target as { pid: number; exe?: string };
      target = ` reading the memory of ${t.exe ?? 'process'} (pid ${t.pid})`;
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
  }

  addDns(event: DnsJobEvent): void {
    const key = `${event.name}|${event.verdict}`;
    const row = this.names.get(key) ?? { name: event.name, verdict: event.verdict, count: 0 };
    row.count++;
    this.names.set(key, row);
  }

  get blocked(): number {
    return this.counts().blocked;
  }

  /** DNS queries, connections/datagrams, how many of both were blocked, detections. */
  counts(): { dns: number; network: number; blocked: number; detections: number } {
    const counts = { dns: 0, network: 0, blocked: 0, detections: this.detections.length };
    for (const row of this.names.values()) {
      counts.dns += row.count;
      if (row.verdict === 'blocked') counts.blocked += row.count;
    }
    for (const row of this.endpoints.values()) {
      counts.network += row.count;
      if (row.verdict === 'blocked') counts.blocked += row.count;
    }
    return counts;
  }

  private sortedEndpoints(): EndpointRow[] {
    return [...this.endpoints.values()].sort((a, b) => VERDICT_ORDER[a.verdict] - VERDICT_ORDER[b.verdict] || b.count - a.count || a.endpoint.localeCompare(b.endpoint));
  }

  private sortedNames(): NameRow[] {
    return [...this.names.values()].sort((a, b) => VERDICT_ORDER[a.verdict] - VERDICT_ORDER[b.verdict] || a.name.localeCompare(b.name));
  }

  renderText(header: string): string {
    const lines = [header];
    for (const d of this.detections) lines.push(`  ${this.detectionLine(d)}`);
    const rows = this.sortedEndpoints();
    if (rows.length === 0) lines.push('  no outbound connections');
    for (const row of rows) {
      lines.push(`  ${row.verdict.toUpperCase().padEnd(8)} ${`${row.endpoint}:${row.port}/${row.protocol}`.padEnd(48)} ×${String(row.count).padEnd(5)} ${[...row.processes].join(', ')}`);
    }
    const names = this.sortedNames().filter((n) => n.verdict !== 'allowed');
    for (const row of names) lines.push(`  ${row.verdict.toUpperCase().padEnd(8)} DNS ${row.name} ×${row.count}`);
    return lines.join('\n');
  }

  renderMarkdown(title: string, facts: string[]): string {
    const out = [`# ${title}`, '', ...facts.map((f) => `- ${f}`), ''];
    if (this.detections.length) {
      out.push('## Lockdown detections', '');
      for (const d of this.detections) out.push(`- ${this.detectionLine(d)}`);
      out.push('');
    }
    out.push('## Endpoints', '');
    const rows = this.sortedEndpoints();
    if (rows.length === 0) out.push('No outbound connections.');
    else {
      out.push('| verdict | endpoint | port | protocol | count | processes |', '|---|---|---|---|---|---|');
      for (const row of rows) out.push(`| ${row.verdict} | ${row.endpoint} | ${row.port} | ${row.protocol} | ${row.count} | ${[...row.processes].join(', ')} |`);
    }
    const names = this.sortedNames();
    if (names.length) {
      out.push('', '## DNS', '', '| verdict | name | queries |', '|---|---|---|');
      for (const row of names) out.push(`| ${row.verdict} | ${row.name} | ${row.count} |`);
    }
    return out.join('\n') + '\n';
  }
}
