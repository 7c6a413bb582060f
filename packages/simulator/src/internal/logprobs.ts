// Chat Completions `logprobs: true`: one entry per output token, as `choices[].logprobs.content`
// (and, streamed, each chunk's choice carries its own tokens' entries). The simulator samples no
// distribution, so the numbers are made up, deterministically from the request: the chosen token
// has a probability from 0.5 to 1 (its logprob <= 0), and `top_logprobs` (0-20) lists it first,
// then other words at falling probabilities that with it never add up to more than 1.

import { prng, WORDS } from './answer.js';
import { tokenPieces } from './tokenizer.js';

export interface TopLogprob {
  token: string;
  logprob: number;
  /** The token's UTF-8 bytes. */
  bytes: number[];
}

export interface TokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

/** The most alternatives `top_logprobs` asks for. */
export const MAX_TOP_LOGPROBS = 20;

const bytesOf = (token: string) => Array.from(Buffer.from(token, 'utf8'));
/** Rounded as the API's are printed, and never above 0 (a probability of 1 is a logprob of -0 otherwise). */
const logOf = (p: number) => Math.min(0, Number(Math.log(p).toFixed(6)));

/** The entries of `text`'s tokens (`hash`: the choice's, so the same request gets the same numbers). */
export function tokenLogprobs(text: string, hash: string, topLogprobs: number): TokenLogprob[] {
  const random = prng(Number.parseInt(hash.slice(24, 32), 16));
  return tokenPieces(text).map((token) => {
    const p = 0.5 + random() / 2;
    const alternatives: TopLogprob[] = [];
    let left = 1 - p;
    const start = Math.floor(random() * WORDS.length);
    for (let i = 0; i < WORDS.length && alternatives.length < topLogprobs - 1; i++) {
      const word = WORDS[(start + i) % WORDS.length];
      const candidate = ` ${word}`;
      if (candidate === token || alternatives.some((a) => a.token === candidate)) continue;
      left /= 2;
      alternatives.push({ token: candidate, logprob: logOf(left), bytes: bytesOf(candidate) });
    }
    const chosen = { token, logprob: logOf(p), bytes: bytesOf(token) };
    return { ...chosen, top_logprobs: topLogprobs > 0 ? [chosen, ...alternatives] : [] };
  });
}
