/**
 * ringfenced: the supervisor as a service (docs/ringfenced.md). One sensor
 * for the machine's whole uptime, many jobs at once, handed over by
 * `ringfence run` (and, later, the runner's job hooks) through the local API
 * (src/agent/local-api.ts, methods in src/agent/job-api.ts).
 *
 * Who may do what is decided by what the caller is (src/agent/caller.ts), not
 * by its uid alone: a process inside a job is that job, root or not, and a
 * job may neither start a fresh job nor end or read another one.
 */
import type { Logger } from 'pino';
import { parsePolicy, AUDIT_POLICY, PolicyError, type Policy } from '../policy/policy';
import type { Endpoint } from '../policy/endpoint';
import { Supervisor, WATCHDOG_MS } from '../jobs/supervisor';

/** How often the daemon looks whether the kernel held it stalled (it cannot see the stall itself while stopped). */
const STALL_CHECK_MS = 250;
import type { JobSession } from '../jobs/session';
import { TraceSession } from '../jobs/trace-session';
import { identifyCaller, type CallerIdentity } from './caller';
import type { LoadedDaemonConfig } from './daemon-config';
import { readStoreCredentials } from './daemon-config';
import { API_ERRORS, JOB_API, JOB_NOTIFICATIONS, parseFinishParams, parseJobRef, parseServiceEndpointTexts, parseStartParams, parseTraceParams, type FinishParams, type FinishReply, type JobInfo, type StartParams, type StartReply, type StatusReply, type TraceFinishReply, type TraceParams, type TraceStartReply } from './job-api';
import { LocalApiServer, type LocalApiConnection, type PeerCredentials } from './local-api';
import { DaemonMetrics, serveMetrics, type MetricsServer } from './metrics';
import { OutputFile } from '../jobs/output';
import { parseUpstream, systemUpstream } from './job';
import { loadServiceEndpoints } from '../jobs/service-endpoints';
import { fetchPolicy } from './store-policy';
import { instanceName } from '../jobs/registry';
import { processGroupOf } from '../jobs/seal';
import { RingfenceError } from '../util/errors';

/** A local API peer, and what it is. */
export interface DaemonCaller {
  peer: PeerCredentials;
  who: CallerIdentity;
}

type RunningJob = {
  info: JobInfo;
  starter: LocalApiConnection<DaemonCaller>;
} & ({ kind: 'run'; session: JobSession; ending?: Promise<FinishReply> } | { kind: 'trace'; session: TraceSession; ending?: Promise<TraceFinishReply> });

const refused = (message: string, code: string = API_ERRORS.refused) => new RingfenceError(message, code);

export class Daemon {
  private readonly jobs = new Map<string, RunningJob>();
  private readonly startedAt = new Date();
  private stopping: Promise<void> | undefined;
  private stallWatch: NodeJS.Timeout | undefined;

  private constructor(
    readonly config: LoadedDaemonConfig,
    private readonly logger: Logger,
    readonly metrics: DaemonMetrics,
    private readonly supervisor: Supervisor,
    private readonly api: LocalApiServer<DaemonCaller>,
    private readonly metricsServer: MetricsServer | undefined,
  ) {}

  /** Loads the sensor, then listens on the local API (and the metrics endpoint). What fails half-way is undone. */
  static async start(config: LoadedDaemonConfig, logger: Logger, onFatal: (why: string) => void = () => undefined): Promise<Daemon> {
    const metrics = new DaemonMetrics();
    let tampered = false;
    for (const note of config.defaultPolicy?.notes ?? []) logger.warn({ policyFile: config.policyFile }, `policy-file: ${note}`);
    const supervisor = await Supervisor.open({
      log: (line) => logger.info(line.replace(/^ringfence: /, '')),
      observe: (events) => {
        for (const event of events) {
          metrics.eventsSeen(event.type);
          if (event.type === 'egress') metrics.verdict('network', event.verdict, event.count);
          else if (event.type === 'detection') metrics.detection(event.detection, event.action);
          if (event.type === 'detection' && event.detection === 'Agent-Tamper' && event.refused) {
            // refused (the job's seccomp filter): ringfenced is whole; the offender's session ends its job, the others go on
            logger.warn({ tgid: event.tgid, comm: event.comm, syscall: event.ptraceRequest }, 'Agent-Tamper refused: a job process aimed a syscall at ringfenced; its job is ended');
          } else if (event.type === 'detection' && event.detection === 'Agent-Tamper' && !tampered) {
            // agent_gone is one flag for the whole sensor: from now on every job process dies at its next
            // syscall, new jobs' too. Say so and stop: systemd restarts a daemon with a fresh sensor.
            tampered = true;
            logger.fatal({ job: undefined, tgid: event.tgid, comm: event.comm }, 'Agent-Tamper: a job process acted on ringfenced; every job is ended, ringfenced stops');
            setImmediate(() => onFatal('Agent-Tamper'));
          }
        }
      },
    });
    let metricsServer: MetricsServer | undefined;
    let api: LocalApiServer<DaemonCaller> | undefined;
    try {
      api = new LocalApiServer<DaemonCaller>({
        log: (level, message, fields) => logger[level](fields ?? {}, message),
        identify: (peer) => ({ peer, who: identifyCaller(peer, supervisor.jobCgroups()) }),
        mode: config.socketGid !== undefined ? 0o660 : 0o600,
        ...(config.socketGid !== undefined ? { group: config.socketGid } : {}),
      });
      if (config.metrics) {
        metricsServer = await serveMetrics(config.metrics.listen, metrics.registry, {
          ...(config.metricsGid !== undefined ? { gid: config.metricsGid } : {}),
          onError: (error) => logger.error({ err: error }, 'metrics endpoint'),
        });
      }
      const daemon = new Daemon(config, logger, metrics, supervisor, api, metricsServer);
      daemon.register(api);
      daemon.watchForStall(onFatal);
      await api.listen(config.socket);
      logger.info({ socket: config.socket, metrics: metricsServer?.address, sensor: supervisor.id, policy: config.defaultPolicy?.name ?? (config.store ? 'from the store' : 'audit') }, 'ringfenced ready');
      return daemon;
    } catch (error) {
      await api?.close().catch(() => undefined);
      await metricsServer?.close().catch(() => undefined);
      await supervisor.close();
      throw error;
    }
  }

  /**
   * After ringfenced was stopped (SIGSTOP from outside, a frozen cgroup) past
   * the watchdog, the kernel has ended every job, and goes on ending every
   * job process (agent_gone): say so and stop, for a fresh sensor.
   */
  private watchForStall(onFatal: (why: string) => void): void {
    this.stallWatch = setInterval(() => {
      if (!this.supervisor.sensor.agentGone().includes('stalled')) return;
      clearInterval(this.stallWatch);
      this.logger.fatal({ jobs: this.jobs.size }, `ringfenced was stopped or stalled for longer than its watchdog (${WATCHDOG_MS / 1000} s): the kernel ended every job; ringfenced stops`);
      onFatal('stalled');
    }, STALL_CHECK_MS);
    this.stallWatch.unref();
  }

  /**
   * Stops: no new jobs; jobs still running are ended (interrupted), each
   * reported; the local API closes; the sensor is unloaded and unpinned
   * (nothing of ringfence is left in the kernel).
   */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info({ jobs: this.jobs.size, signal }, 'ringfenced stopping');
      clearInterval(this.stallWatch);
      await Promise.all([...this.jobs.values()].map((job) => this.finish(job, { exitCode: null, signal: null, interrupted: signal }, `ringfenced stopped (${signal})`).catch(() => undefined)));
      await this.api.close();
      await this.metricsServer?.close().catch((error: Error) => this.logger.error({ err: error }, 'closing the metrics endpoint'));
      await this.supervisor.close();
      this.logger.info('ringfenced stopped');
    })();
    return this.stopping;
  }

  private register(api: LocalApiServer<DaemonCaller>): void {
    api.handle(JOB_API.status, (_params, caller) => this.status(caller));
    api.handle(JOB_API.jobs, (_params, caller) => {
      this.hostOnly(caller, JOB_API.jobs);
      return [...this.jobs.values()].map((job) => job.info);
    });
    api.handle(JOB_API.start, (params, caller, connection) => this.startJob(parseStartParams(params), caller, connection));
    api.handle(JOB_API.trace, (params, caller, connection) => this.startTrace(parseTraceParams(params), caller, connection));
    api.handle(JOB_API.finish, (params, caller, connection) => {
      const end = parseFinishParams(params);
      return this.finish(this.ownJob(end.id, connection, JOB_API.finish), end, undefined);
    });
    api.handle(JOB_API.kill, (params, _caller, connection) => {
      const job = this.ownJob(parseJobRef(JOB_API.kill, params).id, connection, JOB_API.kill);
      job.session.endAll();
      return { id: job.info.id };
    });
  }

  private status(caller: DaemonCaller): StatusReply {
    this.hostOnly(caller, JOB_API.status);
    const stats = this.supervisor.sensor.stats();
    return {
      pid: process.pid,
      instance: instanceName(),
      startedAt: this.startedAt.toISOString(),
      socket: this.config.socket,
      jobs: this.jobs.size,
      sensor: { delivered: stats.delivered, dropped: stats.dropped, unknownRecords: stats.unknownRecords, decodeErrors: stats.decodeErrors },
      kernel: this.supervisor.sensor.kernelObjects(),
    };
  }

  /** A job's processes may not read what the daemon runs (other jobs' repositories, commands). */
  private hostOnly(caller: DaemonCaller, method: string): void {
    if (caller.who.kind === 'job') throw refused(`${method}: refused to a process of job ${caller.who.jobId} (pid ${caller.peer.pid})`);
  }

  private ownJob(id: string, connection: LocalApiConnection<DaemonCaller>, method: string): RunningJob {
    const job = this.jobs.get(id);
    // a job that is not the caller's is as good as unknown to it: nothing is said about others' jobs
    if (!job || job.starter !== connection) throw refused(`${method}: no job ${id} was started on this connection`, API_ERRORS.unknownJob);
    return job;
  }

  /** Who may start a job: root on the host; never a job's process (a fresh job would be a way out of its own). */
  private mayStart(caller: DaemonCaller, method: string): void {
    if (this.stopping) throw refused(`${method}: ringfenced is stopping`);
    if (caller.who.kind === 'job') {
      // nested under a job: its processes are that job's, under its policy; a fresh session would be a way out of it
      throw refused(`${method}: pid ${caller.peer.pid} runs inside job ${caller.who.jobId}: a job cannot start another (its commands are already under its policy)`, API_ERRORS.nested);
    }
    // socket-group members get their own, narrower rights with the runner integration (issue 16)
    if (caller.who.uid !== 0) throw refused(`${method}: only root may start jobs (pid ${caller.peer.pid} is uid ${caller.who.uid})`);
  }

  /** Watches the starter: gone (killed, crashed) before it said the job ended, the job ends; nothing of it runs on unwatched. */
  private watchStarter(job: RunningJob, pid: number): void {
    job.starter.onClose(() => {
      if (this.jobs.get(job.info.id) === job && !job.ending) void this.finish(job, { exitCode: null, signal: null, interrupted: 'SIGHUP' }, `its starter (pid ${pid}) went away`).catch(() => undefined);
    });
  }

  private async startTrace(params: TraceParams, caller: DaemonCaller, connection: LocalApiConnection<DaemonCaller>): Promise<TraceStartReply> {
    this.mayStart(caller, JOB_API.trace);
    let id = '';
    const out = OutputFile.stream(`the trace stream to pid ${caller.peer.pid}`, (text) => connection.notify(JOB_NOTIFICATIONS.events, { id, text }));
    const { session, cgroup } = await this.supervisor.startTrace(
      (jobId, jobCgroup, sensor) =>
        new TraceSession({ id: jobId, command: params.command, out, json: params.json, identity: params.identity }, jobCgroup, {
          tree: sensor.tree,
          tampered: () => sensor.agentGone().includes('tampered'),
          droppedRecords: () => sensor.stats().dropped,
          now: () => new Date(),
        }),
    );
    id = session.id;
    const job: RunningJob = { kind: 'trace', session, starter: connection, info: { id, command: params.command, policy: null, mode: 'audit', startedAt: new Date().toISOString(), starterPid: caller.peer.pid } };
    this.jobs.set(id, job);
    this.metrics.jobStarted();
    this.metrics.jobsRunning(this.jobs.size);
    this.logger.info({ job: id, command: params.command, starter: caller.peer.pid }, 'trace started');
    this.watchStarter(job, caller.peer.pid);
    return { id, cgroup: cgroup.path, agent: this.agentRef };
  }

  /** Whom a job's seal refuses signals to: this process and its group (read once: neither changes). */
  private readonly agentRef = { pid: process.pid, group: processGroupOf('self') ?? process.pid };

  private async startJob(params: StartParams, caller: DaemonCaller, connection: LocalApiConnection<DaemonCaller>): Promise<StartReply> {
    this.mayStart(caller, JOB_API.start);
    const { policy, name, version, from } = await this.policyOf(params);
    const identity = params.identity ? { ...params.identity, ...(this.config.cluster ? { cluster: this.config.cluster } : {}) } : undefined;
    let serviceEndpoints: Endpoint[];
    try {
      serviceEndpoints = params.serviceEndpoints ? parseServiceEndpointTexts(params.serviceEndpoints) : loadServiceEndpoints('default');
    } catch (error) {
      throw refused((error as Error).message, API_ERRORS.badParams);
    }
    let dnsUpstream;
    try {
      dnsUpstream = params.dnsUpstream !== undefined ? parseUpstream(params.dnsUpstream) : (this.config.dnsUpstream ?? systemUpstream());
    } catch (error) {
      throw refused(`${JOB_API.start}: dnsUpstream: ${(error as Error).message}`, API_ERRORS.badParams);
    }
    let id = '';
    const stream = (what: string, method: string) =>
      OutputFile.stream(`the ${what} stream to pid ${caller.peer.pid}`, (text) => connection.notify(method, { id, text }));
    const { session, cgroup } = await this.supervisor.startJob('run', {
      command: params.command,
      policy,
      policyName: name,
      policyVersion: version,
      identity,
      events: params.events ? stream('events', JOB_NOTIFICATIONS.events) : undefined,
      summary: params.summary ? stream('summary', JOB_NOTIFICATIONS.summary) : undefined,
      dnsUpstream,
      serviceEndpoints,
    });
    id = session.id;
    const info: JobInfo = { id, command: params.command, policy: name, mode: policy.egressPolicy, startedAt: new Date().toISOString(), starterPid: caller.peer.pid };
    const job: RunningJob = { kind: 'run', session, info, starter: connection };
    this.jobs.set(id, job);
    this.metrics.jobStarted();
    this.metrics.jobsRunning(this.jobs.size);
    this.logger.info({ job: id, command: params.command, policy: name, version, from, mode: policy.egressPolicy, starter: caller.peer.pid }, 'job started');
    this.watchStarter(job, caller.peer.pid);
    return { id, cgroup: cgroup.path, policy: { name, ...(version !== undefined ? { version } : {}), mode: policy.egressPolicy, from }, agent: this.agentRef };
  }

  /** The request's policy; else the store's for the job's identity; else policy-file's; else audit. */
  private async policyOf(params: StartParams): Promise<{ policy: Policy; name: string | null; version?: number; from: StartReply['policy']['from'] }> {
    if (params.policy) {
      try {
        return { policy: parsePolicy(params.policy.text, params.policy.source), name: params.policy.name, version: params.policy.version, from: 'request' };
      } catch (error) {
        if (error instanceof PolicyError) throw refused(`${JOB_API.start}: ${error.message}`, API_ERRORS.badParams);
        throw error;
      }
    }
    if (this.config.store) {
      const org = params.identity?.org;
      if (!org) throw refused(`${JOB_API.start}: the policy comes from the store: the job's identity must name its org`, API_ERRORS.badParams);
      const { token } = readStoreCredentials(this.config.store);
      const fetched = await fetchPolicy(this.config.store.url, token, {
        org,
        repository: params.identity?.repo,
        workflow: params.identity?.workflow,
        job: params.identity?.jobName,
        cluster: this.config.cluster,
      });
      return { policy: fetched.policy ?? AUDIT_POLICY, name: fetched.name, version: fetched.version, from: 'store' };
    }
    if (this.config.defaultPolicy) return { policy: this.config.defaultPolicy.policy, name: this.config.defaultPolicy.name, from: 'policy-file' };
    return { policy: AUDIT_POLICY, name: null, from: 'audit' };
  }

  /** Ends a job once (a second ask gets the same result), and reports it. */
  private finish(job: RunningJob, end: Omit<FinishParams, 'id'>, why: string | undefined): Promise<FinishReply | TraceFinishReply> {
    if (job.kind === 'trace') {
      job.ending ??= this.ending(job, async () => {
        const result = await this.supervisor.endTrace(job.session, (drain) => job.session.finish(end, drain));
        if (why) result.failures.push(`the job was ended because ${why}`);
        this.metrics.jobEnded(result.tampered ? 'lockdown' : result.failures.length ? 'agent-failure' : 'command');
        for (const failure of result.failures) this.logger.warn({ job: job.info.id }, failure);
        this.logger.info({ job: job.info.id, tampered: result.tampered }, 'trace ended');
        return result;
      });
      return job.ending;
    }
    job.ending ??= this.ending(job, async () => {
      const result = await this.supervisor.endJob(job.session, end);
      if (why) result.agentFailures.push(`the job was ended because ${why}`);
      this.metrics.jobEnded(result.reason);
      for (const failure of result.agentFailures) this.logger.warn({ job: job.info.id }, failure);
      this.logger.info({ job: job.info.id, exitStatus: result.exitStatus, reason: result.reason, blocked: result.blocked, killedBy: result.killedBy }, 'job ended');
      return result;
    });
    return job.ending;
  }

  /** A job's end, whatever its kind: logged when it fails, and the job forgotten either way. */
  private async ending<R>(job: RunningJob, end: () => Promise<R>): Promise<R> {
    try {
      return await end();
    } catch (error) {
      this.metrics.agentFailure('job-end');
      this.logger.error({ job: job.info.id, err: error }, 'ending the job failed');
      throw error;
    } finally {
      this.jobs.delete(job.info.id);
      this.metrics.jobsRunning(this.jobs.size);
    }
  }
}
