import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { createRedis } from './connection.js';
import { createLogger } from './logger.js';
import { cutSecretTokens, maskUrlPasswords, REDACTED, redactSecrets, registerSecret, urlHasPassword } from './redaction.js';

// Not key-shaped on purpose: only its registration can cut it.
const SECRET = `opaque-provider-credential-${randomUUID()}`;
registerSecret(SECRET);

let redis: EmbeddedRedis;
let admin: Redis;
beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin.disconnect();
  await redis.stop();
});

function capture() {
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { logger: createLogger({ destination, level: 'debug' }), raw };
}

describe('redactSecrets', () => {
  it('cuts registered values, key-shaped tokens, bearer credentials and x-api-key values', () => {
    const text = `a ${SECRET} b sk-ant-api03-ABCDEFGHIJKLMNOP c "authorization":"Bearer abcdefgh12345678" d "x-api-key":"zzzzzzzzzzzzzz"`;
    const out = redactSecrets(text);
    expect(out).toBe('a [redacted] b [redacted] c "authorization":"Bearer [redacted]" d "x-api-key":"[redacted]"');
  });

  it('ignores values too short to be a secret', () => {
    expect(registerSecret('short')).toBe(false);
    expect(redactSecrets('a short word')).toBe('a short word');
  });
});

describe('cutSecretTokens', () => {
  const KEY = 'sk-tokenized-key-0123456789';
  const bytes = (t: string) => [...Buffer.from(t, 'utf8')];
  /** OpenAI's logprobs for a text cut into tokens of three characters, each with its first alternative. */
  const logprobs = (text: string) =>
    (text.match(/.{1,3}/g) ?? []).map((token) => ({ token, logprob: -0.1, bytes: bytes(token), top_logprobs: [{ token, logprob: -0.1, bytes: bytes(token) }, { token: 'x', logprob: -3, bytes: [120] }] }));

  it('cuts a key spelled by a run of tokens, in each rank of their alternatives too, and fixes their bytes', () => {
    const response = { choices: [{ index: 0, message: { content: `your key is ${KEY} ok` }, logprobs: { content: logprobs(`your key is ${KEY} ok`), refusal: null } }] };
    const cut = cutSecretTokens(response, [KEY]);
    const entries = cut.choices[0]!.logprobs.content;
    const joined = entries.map((e) => e.token).join('');
    expect(joined).toBe(`your key is ${REDACTED} ok`);
    expect(entries.map((e) => e.top_logprobs[0]!.token).join('')).toBe(`your key is ${REDACTED} ok`);
    for (const e of entries) {
      expect(e.bytes).toEqual(bytes(e.token));
      expect(e.top_logprobs[0]!.bytes).toEqual(bytes(e.top_logprobs[0]!.token));
    }
    // Nothing of the key's body is left in any token or byte list (the text itself is the Redis
    // scrub's: the key stands whole there).
    const text = JSON.stringify(cut.choices[0]!.logprobs);
    expect(text).not.toContain(KEY.slice(3, 12));
    expect(String.fromCharCode(...entries.flatMap((e) => e.bytes))).not.toContain(KEY);
    // The rest of the answer is untouched, and the input was not changed.
    expect(response.choices[0]!.logprobs.content.map((e) => e.token).join('')).toBe(`your key is ${KEY} ok`);
    expect(cut.choices[0]!.message).toBe(response.choices[0]!.message);
  });

  it('gives back the value itself when no token run spells a secret', () => {
    const response = { output: [{ content: [{ type: 'output_text', text: 'hello', logprobs: logprobs('hello there, nothing secret') }] }] };
    expect(cutSecretTokens(response, [KEY])).toBe(response);
    expect(cutSecretTokens(response, [])).toBe(response);
    expect(cutSecretTokens('plain', [KEY])).toBe('plain');
  });
});

describe('maskUrlPasswords', () => {
  it("masks a URL's password and keeps where it points", () => {
    expect(maskUrlPasswords('redis://:hunter2@10.0.0.1:6380/2')).toBe('redis://:***@10.0.0.1:6380/2');
    expect(maskUrlPasswords('at rediss-cluster://app:p@ss@n1:7000,n2:7001: refused')).toBe('at rediss-cluster://app:***@n1:7000,n2:7001: refused');
    expect(maskUrlPasswords('redis://app@h:1 and redis://127.0.0.1:6379')).toBe('redis://app@h:1 and redis://127.0.0.1:6379');
  });
});

describe('maskUrlPasswords, a password in the query', () => {
  it('masks the value of every password parameter, and only that', () => {
    expect(maskUrlPasswords('redis://127.0.0.1:6396?password=hunter2')).toBe('redis://127.0.0.1:6396?password=***');
    expect(maskUrlPasswords('redis://h:1/2?db=2&password=hun@ter2&username=app')).toBe('redis://h:1/2?db=2&password=***&username=app');
    expect(maskUrlPasswords('rediss://h:1?sentinelPassword=s3cret#x')).toBe('rediss://h:1?sentinelPassword=***#x');
    expect(maskUrlPasswords('got "redis://h:1?PASSWORD=hunter2" here')).toBe('got "redis://h:1?PASSWORD=***" here');
    expect(maskUrlPasswords('redis://h:1?username=app&db=3')).toBe('redis://h:1?username=app&db=3');
  });

  it('says a URL holds a password wherever it sits', () => {
    expect(urlHasPassword('redis://h:1?password=hunter2')).toBe(true);
    expect(urlHasPassword('redis://:hunter2@h:1')).toBe(true);
    expect(urlHasPassword('redis://app@h:1?username=app')).toBe(false);
  });
});

describe('the logger', () => {
  it('cuts a secret from every line, in the message, in any field, at any depth', () => {
    const { logger, raw } = capture();
    // What the batcher logged: an SDK error quoting a provider's 401 that echoed the request headers.
    const echoed = `401 {"type":"error","error":{"message":"bad key","headers":{"authorization":"Bearer ${SECRET}"}}}`;
    logger.warn({ claim: 'c1', err: echoed }, 'batch step failed; retrying');
    logger.error({ nested: { deeper: [SECRET] } }, `message with ${SECRET}`);
    expect(raw).toHaveLength(2);
    for (const line of raw) {
      expect(line).not.toContain(SECRET);
      expect(() => JSON.parse(line)).not.toThrow();
    }
    expect(JSON.parse(raw[0]!).err).toBe('401 {"type":"error","error":{"message":"bad key","headers":{"authorization":"Bearer [redacted]"}}}');
  });
});

describe('connections from createRedis', () => {
  it('never write a registered secret: strings in commands, scripts and MULTIs are cut', async () => {
    const conn = createRedis(redis.url, 'worker');
    try {
      const key = `redaction:${randomUUID()}`;
      await conn.set(`${key}:s`, `reason: ${SECRET}`);
      await conn.multi().hset(`${key}:h`, 'failedReason', `401 ${SECRET}`).exec();
      await conn.eval("return redis.call('RPUSH', KEYS[1], ARGV[1])", 1, `${key}:l`, SECRET);
      expect(await admin.get(`${key}:s`)).toBe('reason: [redacted]');
      expect(await admin.hget(`${key}:h`, 'failedReason')).toBe('401 [redacted]');
      expect(await admin.lrange(`${key}:l`, 0, -1)).toEqual(['[redacted]']);
    } finally {
      conn.disconnect();
    }
  });
});
