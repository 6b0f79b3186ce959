/** A test-owned upstream DNS server in its own process; prints its port. */
import { startDnsServer } from '../test/helpers/dns-server';

void startDnsServer({ 'bench.allowed.test': { A: ['198.18.9.9'] } }).then((server) => process.stdout.write(`${server.port}\n`));
