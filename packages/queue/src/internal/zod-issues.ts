import type { z } from 'zod';
import type { Issue, IssueCode } from '../errors.js';
import { maskUrlPasswords } from '../redaction.js';

/** API-key-shaped tokens (`sk-ant-...`, `sk-proj-...`). */
const KEY_SHAPED = /\b(?:sk|pk|rk)-[A-Za-z0-9_-]{12,}/g;

/**
 * Errors are printed and logged: a key pasted where an env variable name belongs, or a password
 * in a URL, must not be echoed back.
 */
function masked(text: string): string {
  return maskUrlPasswords(text).replace(KEY_SHAPED, '[redacted]');
}

/**
 * Where a refused value is likely a secret pasted in the wrong place: a field naming an env
 * variable (the key's own place is the variable), a URL, a credential field.
 */
const SECRET_POSITION = /(?:Env|url|URL|key|Key|token|Token|password|Password|secret|Secret)$/;
/** A run of 20+ letters and digits (both), as the random part of any vendor's key is. */
const TOKEN_LIKE = /[A-Za-z0-9+/=]{20,}/;

function looksLikeToken(text: string): boolean {
  const run = TOKEN_LIKE.exec(text)?.[0];
  return run !== undefined && /[A-Za-z]/.test(run) && /\d/.test(run);
}

function describe(input: unknown, path: string, hideSecrets: boolean): string {
  if (input === undefined) return 'nothing';
  if (typeof input === 'string') {
    if (hideSecrets && (SECRET_POSITION.test(path) || looksLikeToken(input))) return JSON.stringify('[redacted]');
    const shown = masked(input);
    return JSON.stringify(shown.length > 60 ? `${shown.slice(0, 57)}...` : shown);
  }
  if (Array.isArray(input)) return 'an array';
  if (input === null) return 'null';
  if (typeof input === 'object') return 'an object';
  return String(input);
}

/**
 * Flattens zod issues into `{ path, message }` with dotted paths, adding what was found so a
 * message reads `models.x.limits.itpm: expected a positive integer, got -5`. Parse with
 * `reportInput: true` so zod keeps the offending input on each issue. With `hideSecrets` (config
 * files), a refused string in a secret's position or shaped like a key is shown as "[redacted]".
 */
export function toIssues(error: z.ZodError, opts: { hideSecrets?: boolean } = {}): Issue[] {
  const out: Issue[] = [];
  const hideSecrets = opts.hideSecrets ?? false;
  for (const issue of error.issues) out.push(...unionToList(issue, [], hideSecrets));
  return out;
}

/**
 * A union's issue as the closest branch's issues: the branch that got furthest into the value
 * (an array whose 3rd element is wrong) says what is wrong there. When no branch got past the
 * value's own type (a number where a string or an array of blocks belongs), no branch is closer
 * than another, and the first one's "expected a string" would mislead: the union itself is named,
 * with every type it takes. Zod's own message for it is a bare "Invalid input".
 */
function unionToList(issue: z.core.$ZodIssue, basePath: readonly PropertyKey[], hideSecrets: boolean): Issue[] {
  if (issue.code !== 'invalid_union' || !('errors' in issue) || issue.errors.length === 0) return issueToList(issue, basePath, hideSecrets);
  const best = [...issue.errors].sort((a, b) => maxDepth(b) - maxDepth(a))[0] ?? [];
  const path = [...basePath, ...issue.path];
  if (maxDepth(best) > 0) return best.flatMap((sub) => unionToList(sub, path, hideSecrets));
  const message = issue.message === ZOD_UNION_MESSAGE ? expectedOfBranches(issue.errors) : issue.message;
  if (message === undefined) return best.flatMap((sub) => unionToList(sub, path, hideSecrets));
  return issueToList({ ...issue, message }, basePath, hideSecrets);
}

/** What zod says of a union no branch of which matched, when the schema gave it no message of its own. */
const ZOD_UNION_MESSAGE = 'Invalid input';

function maxDepth(issues: readonly z.core.$ZodIssue[]): number {
  return Math.max(0, ...issues.map((i) => i.path.length));
}

/** "expected a string, an array or null": the types the branches take, when each refused the value's type. */
function expectedOfBranches(branches: readonly (readonly z.core.$ZodIssue[])[]): string | undefined {
  const expected: string[] = [];
  for (const branch of branches) {
    const own = branch.find((i) => i.path.length === 0 && i.code === 'invalid_type');
    if (own === undefined || own.code !== 'invalid_type') return undefined;
    const name = withArticle(own.expected);
    if (!expected.includes(name)) expected.push(name);
  }
  return `expected ${expected.length > 1 ? `${expected.slice(0, -1).join(', ')} or ${expected.at(-1)}` : (expected[0] ?? 'something else')}`;
}

function withArticle(type: string): string {
  if (type === 'null' || type === 'undefined') return type;
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/**
 * Zod's own wording for a type or a bound ("Invalid input: expected string, received number",
 * "Too big: expected number to be <=2") in the words of the rest ("expected a string", "expected at
 * most 2"); a message a schema gave is kept.
 */
function plainMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.message.startsWith('Invalid input: expected ')) return `expected ${withArticle(issue.expected)}`;
  if (issue.code === 'too_big' && issue.message.startsWith('Too big: ') && typeof issue.maximum === 'number') {
    return issue.origin === 'array' ? `expected at most ${issue.maximum} items` : `expected at most ${issue.maximum}`;
  }
  if (issue.code === 'too_small' && issue.message.startsWith('Too small: ') && typeof issue.minimum === 'number') {
    if (issue.origin === 'array') return issue.minimum === 1 ? 'must not be empty' : `expected at least ${issue.minimum} items`;
    if (issue.origin === 'string') return issue.minimum === 1 ? 'must not be empty' : `expected at least ${issue.minimum} characters`;
    return `expected at least ${issue.minimum}`;
  }
  return issue.message;
}

/**
 * Issues about the value itself (its type, its range, its format, which values are allowed): what
 * was found says what is wrong. A rule spanning fields (`custom`: a refinement) is raised on the
 * object holding them, so "got an object" would only mislead.
 */
const ABOUT_THE_VALUE: ReadonlySet<string> = new Set(['invalid_type', 'invalid_value', 'invalid_format', 'too_small', 'too_big', 'not_multiple_of', 'invalid_key', 'invalid_element', 'invalid_union']);

function issueToList(issue: z.core.$ZodIssue, basePath: readonly PropertyKey[], hideSecrets: boolean): Issue[] {
  const path = [...basePath, ...issue.path].map(String).join('.');
  let message = plainMessage(issue);
  // A record key's own message ("expected a model name of ...") is on its inner issue; zod's
  // outer one only says "Invalid key in record".
  if (issue.code === 'invalid_key' && issue.issues[0] !== undefined) message = issue.issues[0].message;
  if (issue.code === 'unrecognized_keys') {
    message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  } else if ('input' in issue && ABOUT_THE_VALUE.has(issue.code) && !/, got /.test(message) && !(isBound(issue) && Array.isArray(issue.input))) {
    // A discriminated union's issue holds the whole object; what was wrong is its discriminator.
    const discriminator = 'discriminator' in issue && typeof issue.discriminator === 'string' ? issue.discriminator : undefined;
    const input = discriminator !== undefined && typeof issue.input === 'object' && issue.input !== null ? (issue.input as Record<string, unknown>)[discriminator] : issue.input;
    message = `${message}, got ${describe(input, path, hideSecrets)}`;
  }
  const code = codeOf(issue);
  return [code === undefined ? { path, message } : { path, message, code }];
}

/** A length or range refused: "got an array" would say nothing the message does not. */
function isBound(issue: z.core.$ZodIssue): boolean {
  return issue.code === 'too_small' || issue.code === 'too_big';
}

/** The issue's kind; a rule across fields (`custom`) has the one it names (`params.code`), an unknown key none. */
function codeOf(issue: z.core.$ZodIssue): IssueCode | undefined {
  // Our refinements set it (job.ts), so it is one of ours.
  if (issue.code === 'custom') return issue.params?.code as IssueCode | undefined;
  // Parsed with `reportInput`, an issue carries its input unless there was none: the field was left out.
  if (issue.code === 'invalid_type') return 'input' in issue && issue.input !== undefined ? 'invalid_type' : 'missing_required_parameter';
  // Zod's own minimum checks say "number" for an integer too; job.ts raises an integer's as "int".
  // OpenAI's bounds, as its 400s code them: `temperature: 3` is a decimal above its maximum
  // ("Invalid 'temperature': decimal above maximum value"), `messages: []` an empty array.
  if (issue.code === 'too_small') {
    if (issue.origin === 'int') return 'integer_below_min_value';
    if (issue.origin === 'number') return 'decimal_below_min_value';
    if (issue.origin === 'array' && Number(issue.minimum) === 1) return 'empty_array';
  }
  if (issue.code === 'too_big' && issue.origin === 'int') return 'integer_above_max_value';
  if (issue.code === 'too_big' && issue.origin === 'number') return 'decimal_above_max_value';
  // A union named whole (unionToList): the value's type is none of those it takes, as OpenAI codes
  // `content: 7` ("expected one of a string or array of objects"), unless a branch took the type.
  if (issue.code === 'invalid_union') return issue.errors.length > 0 && issue.errors.every((branch) => branch.some((i) => i.path.length === 0 && i.code === 'invalid_type')) ? 'invalid_type' : 'invalid_value';
  return ABOUT_THE_VALUE.has(issue.code) ? 'invalid_value' : undefined;
}
