// A value that conforms to a JSON schema, drawn from a seeded random source: what the model writes
// as a forced tool call's arguments or as a structured output (`json_schema`). It covers what
// tools and response formats use: objects (every declared property, so the required ones too),
// strings (a word), integers and numbers, booleans, arrays (of `minItems`, at least one, of
// `items`), enums and `const` (their first value), `anyOf` / `oneOf` (the first branch that is not
// null), a list of types (the first that is not null), and `$ref`s into the schema's own
// `$defs` / `definitions`. String formats and length or range bounds are not honoured.

import { WORDS } from './answer.js';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** How deep `$ref`s and nesting are followed: a recursive schema must still end. */
const MAX_DEPTH = 12;

/** An object of `schema`'s properties (`{}` when it declares none); `root` resolves `$ref`s. */
export function sampleObject(schema: unknown, random: () => number, root: unknown = schema): Json {
  const value = sampleOf(schema, random, root, 0);
  return isObject(value) ? value : {};
}

/** A value of `schema`, `root` the document its `$ref`s point into. */
export function sampleJson(schema: unknown, random: () => number, root: unknown = schema): unknown {
  return sampleOf(schema, random, root, 0);
}

function resolveRef(ref: string, root: unknown): unknown {
  if (!ref.startsWith('#')) return undefined;
  let at: unknown = root;
  for (const step of ref.slice(1).split('/').filter(Boolean)) at = isObject(at) ? at[step.replaceAll('~1', '/').replaceAll('~0', '~')] : undefined;
  return at;
}

const notNull = (schema: unknown) => !(isObject(schema) && schema.type === 'null');

function sampleOf(schema: unknown, random: () => number, root: unknown, depth: number): unknown {
  if (!isObject(schema) || depth > MAX_DEPTH) return null;
  if (typeof schema.$ref === 'string') return sampleOf(resolveRef(schema.$ref, root), random, root, depth + 1);
  if (schema.const !== undefined) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  for (const key of ['anyOf', 'oneOf'] as const) {
    const branches = schema[key];
    if (Array.isArray(branches) && branches.length > 0) return sampleOf(branches.find(notNull) ?? branches[0], random, root, depth + 1);
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length > 0) return sampleOf(schema.allOf[0], random, root, depth + 1);
  const type = Array.isArray(schema.type) ? (schema.type.find((t) => t !== 'null') ?? 'null') : (schema.type ?? (isObject(schema.properties) ? 'object' : undefined));
  switch (type) {
    case 'string':
      return WORDS[Math.floor(random() * WORDS.length)] ?? 'ok';
    case 'integer':
    case 'number':
      return 1 + Math.floor(random() * 99);
    case 'boolean':
      return true;
    case 'array': {
      const count = Math.max(1, typeof schema.minItems === 'number' ? schema.minItems : 0);
      if (!isObject(schema.items) || (typeof schema.maxItems === 'number' && schema.maxItems < 1)) return [];
      return Array.from({ length: count }, () => sampleOf(schema.items, random, root, depth + 1));
    }
    case 'object': {
      const properties = isObject(schema.properties) ? schema.properties : {};
      return Object.fromEntries(Object.entries(properties).map(([key, property]) => [key, sampleOf(property, random, root, depth + 1)]));
    }
    default:
      return null;
  }
}
