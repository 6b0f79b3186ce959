/** The human rendering of sensor events (`ringfence trace` without --json; --json writes job events, src/jobs/job-events.ts). */
import type { FdInfo, SensorEvent } from './events';

function fd(info: FdInfo): string {
  if (info.kind !== 'socket') return info.kind;
  const { family, address, port } = info.peer;
  return address ? `socket(${family} ${endpoint(family, address, port)})` : `socket(${family})`;
}

function endpoint(family: string, address: string, port: number): string {
  return family === 'inet6' ? `[${address}]:${port}` : `${address}:${port}`;
}

/** One line per event: time, type, process, then what happened. */
export function formatEvent(event: SensorEvent, ancestry?: string[]): string {
  const time = new Date(event.timeMs).toISOString().slice(11, 23);
  const who = `${event.comm}[${event.tgid}]`;
  let what: string;
  switch (event.type) {
    case 'exec': {
      const stdio = event.stdio.some((s) => s.kind === 'socket') ? ` stdio=${event.stdio.map(fd).join(',')}` : '';
      const c = event.container;
      const container = c.pidnsLevel > 0 || c.mntnsNotInit ? ` container(pidns=${c.pidnsLevel} caps=0x${c.capEffective.toString(16)}${c.usernsInit ? '' : ' userns'})` : '';
      what = `${event.filename} ${JSON.stringify(event.argv)}${event.argsTruncated ? '…' : ''} ppid=${event.ppid} uid=${event.uid}${stdio}${container}`;
      break;
    }
    case 'fork':
      what = `child=${event.childTgid}`;
      break;
    case 'exit':
      what = event.signal !== null ? `signal=${event.signal}` : `code=${event.exitCode}`;
      break;
    case 'connect':
      what = `${endpoint(event.family, event.address, event.port)} proto=${event.protocol} ${event.errno === 0 ? 'ok' : `errno=${event.errno}`}`;
      break;
    case 'ptrace':
      what = `${event.requestName} target=${event.targetPid}`;
      break;
    case 'vm_access':
      what = `process_vm_${event.write ? 'writev' : 'readv'} target=${event.targetPid}`;
      break;
    case 'proc_mem_open':
      what = `/proc/${event.targetTgid}/mem fd=${event.fd}${event.self ? ' self' : ''}${event.writable ? ' rw' : ''}`;
      break;
    case 'stdio_dup':
      what = `fd ${event.fd} := ${fd(event.socket)}`;
      break;
    case 'detection':
      what = `${event.detection} ${event.action} via ${event.hook}${event.targetTgid ? ` target=${event.targetTgid}` : ''}${event.peer.address ? ` peer=${endpoint(event.peer.family, event.peer.address, event.peer.port)}` : ''}`;
      break;
    case 'shell_on_ipc':
      what = `${event.action} stdio=${event.stdio.map((s) => (s.ipc === 'none' ? '-' : `${s.ipc}:${s.peerInode}`)).join(',')}`;
      break;
    case 'egress':
      what = `${event.verdict} ${event.hook} ${endpoint(event.family, event.address, event.port)} proto=${event.protocol}${event.count > 1 ? ` ×${event.count}` : ''}`;
      break;
  }
  const chain = ancestry && ancestry.length > 1 ? `  ← ${ancestry.slice(1).join(' ← ')}` : '';
  return `${time} ${event.type.padEnd(13)} ${who} ${what}${chain}`;
}
