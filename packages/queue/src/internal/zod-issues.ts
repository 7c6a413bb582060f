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
  for (const issue of error.issues) {
    if (issue.code === 'invalid_union' && 'errors' in issue && issue.errors.length > 0) {
      // Report the branch that got furthest rather than "invalid input" for the whole union.
      const best = [...issue.errors].sort((a, b) => maxDepth(b) - maxDepth(a))[0] ?? [];
      for (const sub of best) out.push(...issueToList(sub, issue.path, hideSecrets));
      continue;
    }
    out.push(...issueToList(issue, [], hideSecrets));
  }
  return out;
}

function maxDepth(issues: readonly z.core.$ZodIssue[]): number {
  return Math.max(0, ...issues.map((i) => i.path.length));
}

/**
 * Issues about the value itself (its type, its range, its format, which values are allowed): what
 * was found says what is wrong. A rule spanning fields (`custom`: a refinement) is raised on the
 * object holding them, so "got an object" would only mislead.
 */
const ABOUT_THE_VALUE: ReadonlySet<string> = new Set(['invalid_type', 'invalid_value', 'invalid_format', 'too_small', 'too_big', 'not_multiple_of', 'invalid_key', 'invalid_element', 'invalid_union']);

function issueToList(issue: z.core.$ZodIssue, basePath: readonly PropertyKey[], hideSecrets: boolean): Issue[] {
  const path = [...basePath, ...issue.path].map(String).join('.');
  let message = issue.message;
  // A record key's own message ("expected a model name of ...") is on its inner issue; zod's
  // outer one only says "Invalid key in record".
  if (issue.code === 'invalid_key' && issue.issues[0] !== undefined) message = issue.issues[0].message;
  if (issue.code === 'unrecognized_keys') {
    message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  } else if ('input' in issue && ABOUT_THE_VALUE.has(issue.code) && !/, got /.test(message)) {
    // A discriminated union's issue holds the whole object; what was wrong is its discriminator.
    const discriminator = 'discriminator' in issue && typeof issue.discriminator === 'string' ? issue.discriminator : undefined;
    const input = discriminator !== undefined && typeof issue.input === 'object' && issue.input !== null ? (issue.input as Record<string, unknown>)[discriminator] : issue.input;
    message = `${message}, got ${describe(input, path, hideSecrets)}`;
  }
  const code = codeOf(issue);
  return [code === undefined ? { path, message } : { path, message, code }];
}

/** The issue's kind; a rule across fields (`custom`) has the one it names (`params.code`), an unknown key none. */
function codeOf(issue: z.core.$ZodIssue): IssueCode | undefined {
  // Our refinements set it (job.ts), so it is one of ours.
  if (issue.code === 'custom') return issue.params?.code as IssueCode | undefined;
  // Parsed with `reportInput`, an issue carries its input unless there was none: the field was left out.
  if (issue.code === 'invalid_type') return 'input' in issue && issue.input !== undefined ? 'invalid_type' : 'missing_required_parameter';
  // Zod's own minimum checks say "number" for an integer too; job.ts raises an integer's as "int".
  if (issue.code === 'too_small' && issue.origin === 'int') return 'integer_below_min_value';
  return ABOUT_THE_VALUE.has(issue.code) ? 'invalid_value' : undefined;
}
