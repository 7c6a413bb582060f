import { idempotentJobId, newJobId } from '@headroom/queue';
import { describe, expect, it } from 'vitest';
import { ANTHROPIC_CUSTOM_ID, customIdMap, customIdOf, jobIdOfCustomId } from './custom-id.js';

describe('custom ids', () => {
  it('maps the ids the fleet makes into Anthropic custom_ids and back', () => {
    for (const id of [newJobId('batch'), idempotentJobId('batch', 'report-7'), 'batch.a_b.c', 'x', 'batch.ünï:cødé']) {
      const custom = customIdOf('anthropic', id);
      expect(custom).toMatch(ANTHROPIC_CUSTOM_ID);
      expect(jobIdOfCustomId('anthropic', custom)).toBe(id);
    }
    expect(customIdOf('anthropic', 'batch.123e4567-e89b-12d3-a456-426614174000')).toBe('batch_d123e4567-e89b-12d3-a456-426614174000');
  });

  it('keeps distinct ids distinct, even where a naive dot-to-underscore swap would collide', () => {
    expect(customIdOf('anthropic', 'a.b')).not.toBe(customIdOf('anthropic', 'a_b'));
    expect(customIdOf('anthropic', 'a_db')).not.toBe(customIdOf('anthropic', 'a.b'));
  });

  it('hashes an id too long to escape, and finds its job through the claim map', () => {
    const long = `batch.${'x'.repeat(80)}`;
    const custom = customIdOf('anthropic', long);
    expect(custom).toMatch(ANTHROPIC_CUSTOM_ID);
    expect(jobIdOfCustomId('anthropic', custom)).toBeUndefined();
    expect(customIdMap('anthropic', [long, 'batch.short']).get(custom)).toBe(long);
  });

  it('passes OpenAI ids through unchanged and refuses malformed Anthropic ones', () => {
    expect(customIdOf('openai', 'batch.abc')).toBe('batch.abc');
    expect(jobIdOfCustomId('openai', 'batch.abc')).toBe('batch.abc');
    expect(jobIdOfCustomId('anthropic', 'bad_q')).toBeUndefined();
    expect(jobIdOfCustomId('anthropic', 'bad_x12')).toBeUndefined();
    expect(jobIdOfCustomId('anthropic', 'has space')).toBeUndefined();
  });
});
