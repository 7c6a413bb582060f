// Stop sequences: Chat `stop` (a string or up to 4) and Messages `stop_sequences`. The model stops
// where its text would first contain one of them; the stop string itself is not part of the
// answer, and the output is counted to the cut. Since the simulator's text is generated, a test
// makes a stop testable by choosing a word the answer holds: the fields are delivery fields (see
// answer.ts), so adding them leaves the text they cut the same.

import type { Answer } from './answer.js';
import { countTokens } from './tokenizer.js';

export interface StoppedAnswer extends Answer {
  /** The stop string the answer ended at, when one did. */
  stopSequence: string | null;
}

/** The stop strings a request gives: Chat's `stop` (a string or a list) or Messages' `stop_sequences`. */
export function stopStrings(value: unknown): string[] {
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
  return list.filter((s): s is string => typeof s === 'string' && s !== '');
}

/** `answer` cut before the first stop string in its text; as it was when none occurs. */
export function cutAtStop(answer: Answer, stops: readonly string[]): StoppedAnswer {
  let at = -1;
  let matched: string | null = null;
  for (const stop of stops) {
    const found = answer.text.indexOf(stop);
    if (found >= 0 && (at < 0 || found < at)) {
      at = found;
      matched = stop;
    }
  }
  if (matched === null) return { ...answer, stopSequence: null };
  const text = answer.text.slice(0, at);
  return { text, outputTokens: countTokens(text), clipped: false, stopSequence: matched };
}
