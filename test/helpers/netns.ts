/**
 * A test-owned host in its own network namespace, reached over a veth pair:
 * the only non-loopback addresses tests may use. Addresses are from the
 * benchmarking range 198.18.0.0/15 (RFC 2544) and fd00::/8 (ULA).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

export interface TestHost {
  name: string;
  /** The namespace side. */
  ip4: string;
  ip6: string;
  /** Runs a command inside the namespace (for servers). */
  spawn(command: string, args: string[]): ChildProcess;
  destroy(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

/** Creates namespace `rf<index>` with 198.18.<index>.2 and fd00:18:<index>::2 behind a veth. */
export function createTestHost(index: number): TestHost {
  const name = `rf-test-${process.pid % 10000}-${index}`;
  const hostSide = `rfh${process.pid % 10000}x${index}`;
  const peerSide = `rfp${process.pid % 10000}x${index}`;
  const subnet = 100 + index;
  try {
    ip('netns', 'del', name);
  } catch {
    /* not there */
  }
  ip('netns', 'add', name);
  ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', peerSide);
  ip('link', 'set', peerSide, 'netns', name);
  ip('addr', 'add', `198.18.${subnet}.1/24`, 'dev', hostSide);
  ip('-6', 'addr', 'add', `fd00:18:${subnet}::1/64`, 'dev', hostSide, 'nodad');
  ip('link', 'set', hostSide, 'up');
  ip('-n', name, 'addr', 'add', `198.18.${subnet}.2/24`, 'dev', peerSide);
  ip('-n', name, '-6', 'addr', 'add', `fd00:18:${subnet}::2/64`, 'dev', peerSide, 'nodad');
  ip('-n', name, 'link', 'set', peerSide, 'up');
  ip('-n', name, 'link', 'set', 'lo', 'up');
  const children: ChildProcess[] = [];
  return {
    name,
    ip4: `198.18.${subnet}.2`,
    ip6: `fd00:18:${subnet}::2`,
    spawn(command, args) {
      const child = spawn('ip', ['netns', 'exec', name, command, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      return child;
    },
    destroy() {
      for (const child of children) child.kill('SIGKILL');
      try {
        ip('link', 'del', hostSide);
      } catch {
        /* gone with the namespace */
      }
      ip('netns', 'del', name);
    },
  };
}
