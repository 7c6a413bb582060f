// OpenAI Files, as much as the Batch API needs: upload (multipart), retrieve, list, content, delete.
// Files belong to the key that uploaded them; other keys get a 404, as another organisation would.

import { newId } from './answer.js';
import { type Exchange, json, type Reply } from './http-exchange.js';
import { invalidRequest, openaiError } from './openai-request.js';
import type { SimulatorState } from './state.js';

export interface StoredFile {
  id: string;
  apiKey: string;
  bytes: number;
  createdAt: number;
  filename: string;
  purpose: string;
  content: Buffer;
}

const PURPOSES = ['assistants', 'assistants_output', 'batch', 'batch_output', 'fine-tune', 'fine-tune-results', 'vision', 'user_data', 'evals'];

export function fileObject(file: StoredFile) {
  return {
    id: file.id,
    object: 'file' as const,
    bytes: file.bytes,
    created_at: Math.floor(file.createdAt / 1000),
    filename: file.filename,
    purpose: file.purpose,
    status: 'processed' as const,
    expires_at: null,
    status_details: null,
  };
}

/** Stores a file the simulator itself writes (batch output and error files). */
export function storeFile(state: SimulatorState, apiKey: string, filename: string, purpose: string, content: string): StoredFile {
  const buffer = Buffer.from(content, 'utf8');
  const file: StoredFile = { id: newId('file-', 22), apiKey, bytes: buffer.length, createdAt: state.now(), filename, purpose, content: buffer };
  state.openaiFiles.set(file.id, file);
  return file;
}

export function findFile(state: SimulatorState, id: string, apiKey: string): StoredFile | undefined {
  const file = state.openaiFiles.get(id);
  return file?.apiKey === apiKey ? file : undefined;
}

function noSuchFile(id: string): Reply {
  return openaiError(404, invalidRequest(`No such File object: ${id}`, 'id', null));
}

export async function handleUploadFile(state: SimulatorState, exchange: Exchange, apiKey: string): Promise<Reply> {
  const contentType = exchange.headers['content-type'] ?? '';
  if (!contentType.startsWith('multipart/form-data')) {
    return openaiError(400, invalidRequest("Invalid content type: files are uploaded as 'multipart/form-data'.", null, 'invalid_content_type'));
  }
  let form: FormData;
  try {
    // The WHATWG Request parses multipart for us: no dependency, and the same parser fetch uses.
    form = await new Request('http://simulator/v1/files', {
      method: 'POST',
      headers: { 'content-type': contentType },
      body: exchange.body,
    }).formData();
  } catch (error) {
    return openaiError(400, invalidRequest(`Could not parse multipart form: ${(error as Error).message}`));
  }
  const purpose = form.get('purpose');
  const upload = form.get('file');
  if (typeof purpose !== 'string') return openaiError(400, invalidRequest("Missing required parameter: 'purpose'.", 'purpose', 'missing_required_parameter'));
  if (!PURPOSES.includes(purpose)) {
    return openaiError(400, invalidRequest(`Invalid value for 'purpose': '${purpose}'.`, 'purpose', 'invalid_value'));
  }
  if (upload === null || typeof upload === 'string') {
    return openaiError(400, invalidRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter'));
  }
  const filename = 'name' in upload && typeof upload.name === 'string' ? upload.name : 'upload';
  if (purpose === 'batch' && !filename.endsWith('.jsonl')) {
    return openaiError(400, invalidRequest('Invalid file format for Batch API. Must be .jsonl', 'file', 'invalid_file_format'));
  }
  const content = Buffer.from(await upload.arrayBuffer());
  const file: StoredFile = { id: newId('file-', 22), apiKey, bytes: content.length, createdAt: state.now(), filename, purpose, content };
  state.openaiFiles.set(file.id, file);
  return json(200, fileObject(file));
}

export function handleGetFile(state: SimulatorState, id: string, apiKey: string): Reply {
  const file = findFile(state, id, apiKey);
  return file ? json(200, fileObject(file)) : noSuchFile(id);
}

export function handleFileContent(state: SimulatorState, id: string, apiKey: string): Reply {
  const file = findFile(state, id, apiKey);
  if (!file) return noSuchFile(id);
  return { kind: 'raw', status: 200, contentType: 'application/octet-stream', body: file.content };
}

export function handleDeleteFile(state: SimulatorState, id: string, apiKey: string): Reply {
  const file = findFile(state, id, apiKey);
  if (!file) return noSuchFile(id);
  state.openaiFiles.delete(id);
  return json(200, { id, object: 'file', deleted: true });
}

export function handleListFiles(state: SimulatorState, exchange: Exchange, apiKey: string): Reply {
  const purpose = exchange.query.get('purpose');
  const order = exchange.query.get('order') === 'asc' ? 'asc' : 'desc';
  const limit = Math.min(10_000, Math.max(1, Number(exchange.query.get('limit') ?? 10_000) || 10_000));
  const files = [...state.openaiFiles.values()].filter((f) => f.apiKey === apiKey && (purpose === null || f.purpose === purpose));
  if (order === 'desc') files.reverse();
  return json(200, cursorPage(files.map(fileObject), exchange.query.get('after'), limit));
}

/** OpenAI's cursor page: `after` is the id of the last item the client has seen. */
export function cursorPage<T extends { id: string }>(items: T[], after: string | null, limit: number) {
  // An unknown cursor yields an empty last page rather than starting over.
  const start = after === null ? 0 : items.findIndex((item) => item.id === after) + 1 || items.length;
  const data = items.slice(start, start + limit);
  return {
    object: 'list' as const,
    data,
    first_id: data[0]?.id ?? null,
    last_id: data[data.length - 1]?.id ?? null,
    has_more: start + data.length < items.length,
  };
}
