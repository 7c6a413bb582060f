import { Cluster, Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createRedis, duplicateFor } from './connection.js';
import { HeadroomError } from './errors.js';
import { parseRedisUrl } from './redis-url.js';

describe('parseRedisUrl', () => {
  it('passes single-node URLs through to ioredis, noting TLS', () => {
    expect(parseRedisUrl('redis://:pw@10.0.0.1:6380/2')).toEqual({ kind: 'standalone', url: 'redis://:pw@10.0.0.1:6380/2', tls: false });
    expect(parseRedisUrl('rediss://default:pw@cache.example.com:6379')).toMatchObject({ kind: 'standalone', tls: true });
  });

  it('reads a cluster node list with user, password and default port', () => {
    expect(parseRedisUrl('redis-cluster://app:s3cret@n1:7000,n2:7001,n3')).toEqual({
      kind: 'cluster',
      tls: false,
      username: 'app',
      password: 's3cret',
      nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }, { host: 'n3', port: 6379 }],
    });
  });

  it('reads TLS, a password without user, percent-encoding, IPv6 and a trailing slash', () => {
    expect(parseRedisUrl('rediss-cluster://:p%40ss%3Aword@[::1]:7000,cfg.cache.amazonaws.com:6379/')).toEqual({
      kind: 'cluster',
      tls: true,
      password: 'p@ss:word',
      nodes: [{ host: '::1', port: 7000 }, { host: 'cfg.cache.amazonaws.com', port: 6379 }],
    });
  });

  it('splits at the last @ so an unencoded @ in the password still works', () => {
    expect(parseRedisUrl('redis-cluster://:a@b@h:1')).toMatchObject({ password: 'a@b', nodes: [{ host: 'h', port: 1 }] });
  });

  it.each([
    ['http://h:1', /expected redis:\/\//],
    ['redis-cluster://', /at least one host/],
    ['redis-cluster://h:1/3', /only database 0/],
    ['redis-cluster://h:1?tls=true', /no query string/],
    ['redis-cluster://h:99999', /out of range/],
    ['redis-cluster://h:x', /not host:port/],
    ['redis://127.0.0.1:notaport', /not a valid URL/],
    ['redis://127.0.0.1:99999', /not a valid URL/],
  ])('refuses %s with CONFIG_INVALID', (url, message) => {
    let error: unknown;
    try {
      parseRedisUrl(url);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(HeadroomError);
    expect((error as HeadroomError).code).toBe('CONFIG_INVALID');
    expect((error as Error).message).toMatch(message);
  });

  it('never echoes the password of a single-node URL that ioredis could not parse', () => {
    expect(() => parseRedisUrl('redis://:hunter2@h:port')).toThrow(/not a valid URL/);
    expect(() => parseRedisUrl('redis://:hunter2@h:port')).not.toThrow(/hunter2/);
  });

  it('never echoes the password in an error', () => {
    expect(() => parseRedisUrl('redis-cluster://:hunter2@h:0')).toThrow(/out of range/);
    try {
      parseRedisUrl('redis-cluster://:hunter2@h:0');
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
    }
  });
});

describe('createRedis', () => {
  const opened: (Redis | Cluster)[] = [];
  const open = (c: Redis | Cluster) => {
    opened.push(c);
    return c;
  };
  afterEach(() => {
    for (const c of opened.splice(0)) c.disconnect();
  });

  it('returns a Cluster for a cluster URL, with the role options split between cluster and nodes', () => {
    const worker = open(createRedis('rediss-cluster://app:pw@n1:7000,n2:7001', 'worker', { lazyConnect: true }));
    expect(worker).toBeInstanceOf(Cluster);
    const w = worker as Cluster;
    expect(w.options.enableReadyCheck).toBe(true);
    expect(w.options.redisOptions).toMatchObject({ username: 'app', password: 'pw', tls: {}, maxRetriesPerRequest: null });
    expect(w.options.redisOptions).not.toHaveProperty('enableOfflineQueue');
    expect(typeof w.options.dnsLookup).toBe('function');

    const producer = open(createRedis('redis-cluster://n1:7000', 'producer', { lazyConnect: true })) as Cluster;
    expect(producer.options.enableOfflineQueue).toBe(false);
    expect(producer.options.redisOptions).toMatchObject({ maxRetriesPerRequest: 1 });
    expect(producer.options.redisOptions).not.toHaveProperty('tls');
  });

  it('duplicates a producer cluster for a blocking reader with maxRetriesPerRequest null, keeping the credentials', () => {
    const producer = open(createRedis('redis-cluster://:pw@n1:7000', 'producer', { lazyConnect: true }));
    const reader = open(duplicateFor(producer, 'worker')) as Cluster;
    expect(reader).toBeInstanceOf(Cluster);
    expect(reader.options.redisOptions).toMatchObject({ password: 'pw', maxRetriesPerRequest: null });
  });

  it('returns a plain Redis for redis:// with the password from the URL', () => {
    const conn = open(createRedis('redis://:pw@127.0.0.1:1', 'producer', { lazyConnect: true }));
    expect(conn).toBeInstanceOf(Redis);
    expect((conn as Redis).options).toMatchObject({ password: 'pw', enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  });
});
