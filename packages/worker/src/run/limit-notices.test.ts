import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, parseRateLimitHeaders } from '@headroom/queue';
import { LimitNotices } from './limit-notices.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger({ level: 'info', destination }) };
}

const openai = (tokens: number) => parseRateLimitHeaders({ 'x-ratelimit-limit-requests': '5000', 'x-ratelimit-limit-tokens': String(tokens) });

describe('LimitNotices', () => {
  it('warns once per pool and dimension when the config sets a limit above the announced one', async () => {
    const { lines, logger } = capture();
    const notices = new LimitNotices(logger);
    notices.check('gpt-4.1', { rpm: 5000, tpm: 100_000_000 }, openai(2_000_000));
    notices.check('gpt-4.1', { rpm: 5000, tpm: 100_000_000 }, openai(2_000_000));
    // A config at or below the announced limit is the operator's choice: nothing to say.
    notices.check('gpt-4.1-mini', { rpm: 4000, tpm: 1_000_000 }, openai(2_000_000));
    notices.check('gpt-4o', { tpm: 100_000_000 }, parseRateLimitHeaders({}));
    await new Promise((r) => setTimeout(r, 20));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ pool: 'gpt-4.1', dimension: 'tpm', configured: 100_000_000, announced: 2_000_000 });
    expect(String(lines[0]!.msg)).toContain('paces by the provider');
  });
});
