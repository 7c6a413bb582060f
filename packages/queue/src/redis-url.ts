/**
 * The Redis URL forms Headroom accepts, in one place, so the CLI, the worker and producers read a
 * `REDIS_URL` the same way:
 *
 * - `redis://[user:password@]host:port[/db]`   one node (ioredis parses it; `:password@` for
 *   a password without a user)
 * - `rediss://...`                            the same over TLS
 * - `redis-cluster://[user:password@]host1:port1,host2:port2,...`   Redis Cluster: any
 *   reachable nodes (or one configuration endpoint); the client discovers the rest
 * - `rediss-cluster://...`                    Redis Cluster over TLS
 *
 * A cluster has no URL form in ioredis itself (its `Cluster` takes a node list), hence our own
 * scheme; it carries no query string and no database (a cluster only has db 0), and refuses
 * both rather than silently ignoring them.
 */
import { ErrorCode, HeadroomError } from './errors.js';

export interface ClusterNodeAddress {
  host: string;
  port: number;
}

export type ParsedRedisUrl =
  | { kind: 'standalone'; url: string; tls: boolean }
  | { kind: 'cluster'; nodes: ClusterNodeAddress[]; username?: string; password?: string; tls: boolean };

const CLUSTER_SCHEME = /^(rediss?)-cluster:\/\//i;
const STANDALONE_SCHEME = /^rediss?:\/\//i;
const DEFAULT_PORT = 6379;

/** Throws `CONFIG_INVALID` naming the problem; the URL itself is never echoed (it may hold a password). */
function invalid(message: string): never {
  throw new HeadroomError(ErrorCode.CONFIG_INVALID, `invalid Redis URL: ${message}`);
}

function parseNode(text: string): ClusterNodeAddress {
  // `[::1]:7000` (IPv6 in brackets), `host:7000`, or `host` alone (default port).
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(text);
  if (!m) return invalid(`"${text}" is not host:port`);
  const host = (m[1] ?? m[2]) as string;
  const port = m[3] === undefined ? DEFAULT_PORT : Number(m[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return invalid(`port of "${text}" is out of range`);
  return { host, port };
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return invalid(`the ${what} is not valid percent-encoding`);
  }
}

export function parseRedisUrl(url: string): ParsedRedisUrl {
  const cluster = CLUSTER_SCHEME.exec(url);
  if (!cluster) {
    if (!STANDALONE_SCHEME.test(url)) invalid('expected redis://, rediss://, redis-cluster:// or rediss-cluster://');
    // ioredis parses it with WHATWG URL and throws a bare TypeError (its `input` holds the URL,
    // password and all): check here so a typo gets the same clear CONFIG_INVALID as any other.
    try {
      new URL(url);
    } catch {
      invalid('not a valid URL: check the host, the port (1-65535) and that reserved characters in the password are percent-encoded');
    }
    return { kind: 'standalone', url, tls: /^rediss:/i.test(url) };
  }
  const tls = cluster[1]!.toLowerCase() === 'rediss';
  let rest = url.slice(cluster[0].length);
  if (rest.includes('?') || rest.includes('#')) invalid('a cluster URL takes no query string or fragment');
  const slash = rest.indexOf('/', rest.lastIndexOf('@') + 1);
  if (slash >= 0) {
    const path = rest.slice(slash);
    if (path !== '/' && path !== '/0') invalid('Redis Cluster has only database 0');
    rest = rest.slice(0, slash);
  }
  // The password may itself hold '@' (percent-encoding it is correct but often forgotten): the
  // host list never does, so split at the last one.
  const at = rest.lastIndexOf('@');
  const auth = at >= 0 ? rest.slice(0, at) : undefined;
  const hosts = at >= 0 ? rest.slice(at + 1) : rest;
  const nodes = hosts.split(',').filter((h) => h !== '').map(parseNode);
  if (nodes.length === 0) invalid('a cluster URL needs at least one host:port');

  const parsed: ParsedRedisUrl = { kind: 'cluster', nodes, tls };
  if (auth !== undefined) {
    const colon = auth.indexOf(':');
    const username = decode(colon >= 0 ? auth.slice(0, colon) : auth, 'user name');
    if (username) parsed.username = username;
    if (colon >= 0) parsed.password = decode(auth.slice(colon + 1), 'password');
  }
  return parsed;
}

