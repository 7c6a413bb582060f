// Chat Completions' audio output (`modalities: ["text", "audio"]` with `audio: { voice, format }`):
// the answer is spoken, so the message holds `audio` (its id, base64 data, expiry and transcript)
// and `content: null`, as the API answers. The sound is made up: each token of the transcript gets
// a fixed number of bytes drawn from its hash, so the same request always gets the same data, and
// a stream's data pieces (one per token, each base64 on its own) join into the plain answer's data.

import { newId, sha256 } from './answer.js';
import type { ChatParams } from './openai-request.js';
import { tokenPieces } from './tokenizer.js';

export interface ChatAudio {
  id: string;
  data: string;
  expires_at: number;
  transcript: string;
}

/**
 * Bytes of sound per transcript token: a multiple of 3, so each piece's base64 has no padding and
 * the pieces join into the base64 of the whole (and of 2, whole 16-bit samples).
 */
const BYTES_PER_TOKEN = 24;

/** How long the API keeps a spoken answer for a later turn to name by its id (the simulator's guess: an hour). */
const AUDIO_KEPT_SEC = 3600;

/** Whether the request asks for a spoken answer: both the modality and its voice and format. */
export function wantsAudio(params: ChatParams): boolean {
  return Array.isArray(params.modalities) && params.modalities.includes('audio') && typeof params.audio === 'object' && params.audio !== null;
}

/** Base64 characters of one token's sound (no padding: BYTES_PER_TOKEN is a multiple of 3). */
const BASE64_PER_TOKEN = (BYTES_PER_TOKEN / 3) * 4;

export function spokenAnswer(transcript: string, seed: string, createdSec: number): ChatAudio {
  const data = tokenPieces(transcript)
    .map((piece, at) => Buffer.from(sha256(`${seed}:${at}:${piece}`).slice(0, BYTES_PER_TOKEN * 2), 'hex').toString('base64'))
    .join('');
  return { id: newId('audio_', 32), data, expires_at: createdSec + AUDIO_KEPT_SEC, transcript };
}

/** A spoken answer as a stream sends it: per token, its piece of the transcript and its sound. */
export function spokenPieces(audio: ChatAudio): { transcript: string; data: string }[] {
  return tokenPieces(audio.transcript).map((transcript, at) => ({ transcript, data: audio.data.slice(at * BASE64_PER_TOKEN, (at + 1) * BASE64_PER_TOKEN) }));
}
