#!/usr/bin/env node
/*
 * node examples/demo-resolve.js NAME SERVER: prints NAME's first IPv4 address,
 * asking the DNS server at SERVER (port 53) directly, as package managers'
 * own resolvers do; not through NSS, which may hand the name to a local
 * daemon (systemd-resolved, nscd) outside the job. Under ringfence the query
 * is redirected to the job's DNS proxy whatever server it names. Exits 1
 * with the resolver's error code (ENOTFOUND for NXDOMAIN) when there is no
 * answer.
 */
'use strict';
const { Resolver } = require('node:dns').promises;

const [name, server] = process.argv.slice(2);
if (!name || !server) {
  console.error('usage: node examples/demo-resolve.js NAME SERVER');
  process.exit(2);
}
const resolver = new Resolver({ timeout: 1000, tries: 2 });
resolver.setServers([server]);
resolver.resolve4(name).then(
  (addresses) => console.log(addresses[0]),
  (error) => {
    console.error(`${name}: ${error.code}`);
    process.exit(1);
  },
);
