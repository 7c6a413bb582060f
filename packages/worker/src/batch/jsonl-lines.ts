/**
 * The lines of a streamed JSONL body (a batch's results, an OpenAI output file), read without
 * holding a 200 MB file in memory at once. Blank lines are skipped; a body cut off mid-stream
 * throws from the read (the results are read again), while a line that arrives whole but is not
 * what it should be is left to the caller (it names no job it can be trusted for).
 */
export async function* linesOf(body: ReadableStream<Uint8Array> | null): AsyncIterable<string> {
  if (!body) return;
  const decoder = new TextDecoder();
  let rest = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    rest += decoder.decode(chunk, { stream: true });
    let newline = rest.indexOf('\n');
    while (newline >= 0) {
      const line = rest.slice(0, newline).trim();
      if (line) yield line;
      rest = rest.slice(newline + 1);
      newline = rest.indexOf('\n');
    }
  }
  rest += decoder.decode();
  if (rest.trim()) yield rest.trim();
}
