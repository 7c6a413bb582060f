/**
 * Loads the Lua scripts in `src/lua/` (named `<name>-<numberOfKeys>.lua`, or `<name>.lua` for a
 * script whose key count varies per call: `runScript` then passes `keys.length`) and registers
 * them on an ioredis connection. A script may embed one of BullMQ's own scripts (`--- @bullmq "name"`),
 * taken from the installed (pinned) bullmq at load time, as a local function of that name taking
 * `(KEYS, ARGV)`: Headroom then writes a job exactly as BullMQ would, inside its own atomic call. ioredis' `defineCommand` calls EVALSHA and falls back to EVAL on
 * NOSCRIPT, so a Redis restart or failover reloads them by itself.
 *
 * Commands are registered under a name carrying this package's version, so two versions of
 * Headroom sharing one Redis never run each other's script.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Redis, Cluster } from 'ioredis';
import pkg from '../package.json' with { type: 'json' };

// This file sits one level below the package root in both src/ and dist/, so one relative
// URL finds the scripts from either.
const LUA_DIR = fileURLToPath(new URL('../src/lua/', import.meta.url));
const INCLUDE = /^--- @include "([\w/-]+)"\s*$/gm;
const BULLMQ_INCLUDE = /^--- @bullmq "(\w+)"\s*$/gm;
/** The BullMQ scripts Headroom embeds, with the number of keys our callers pass them. */
const BULLMQ_SCRIPTS: Record<string, { file: string; keys: number }> = {
  addStandardJob: { file: 'addStandardJob-9.js', keys: 9 },
  moveJobFromActiveToWait: { file: 'moveJobFromActiveToWait-9.js', keys: 9 },
  moveToDelayed: { file: 'moveToDelayed-11.js', keys: 11 },
  moveToFinished: { file: 'moveToFinished-14.js', keys: 14 },
  promote: { file: 'promote-9.js', keys: 9 },
  removeJob: { file: 'removeJob-2.js', keys: 2 },
  reprocessJob: { file: 'reprocessJob-9.js', keys: 9 },
};
const require = createRequire(import.meta.url);

export interface ScriptSource {
  name: string;
  /** Undefined: given per call. */
  numberOfKeys: number | undefined;
  lua: string;
}

function expandIncludes(lua: string, seen: Set<string>): string {
  return lua.replace(INCLUDE, (_line, include: string) => {
    if (seen.has(include)) return '';
    seen.add(include);
    return expandIncludes(readFileSync(`${LUA_DIR}${include}.lua`, 'utf8'), seen);
  });
}

function bullmqScript(name: string): string {
  const known = BULLMQ_SCRIPTS[name];
  if (!known) throw new Error(`no BullMQ script ${name} is known to scripts.ts`);
  const mod = require(`bullmq/dist/cjs/scripts/${known.file}`) as Record<string, { name: string; content: string; keys: number } | undefined>;
  const script = mod[name];
  // A bullmq upgrade that changes the script's keys must fail here, not write jobs wrongly.
  if (!script || script.keys !== known.keys) {
    throw new Error(`bullmq's ${name} script is not the ${known.keys}-key script Headroom embeds; bullmq is pinned for this reason`);
  }
  return `local function ${name}(KEYS, ARGV)\n${script.content}\nend\n`;
}

let cache: ScriptSource[] | undefined;

export function loadScripts(): ScriptSource[] {
  if (cache) return cache;
  cache = readdirSync(LUA_DIR)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const match = /^([a-z][\w-]*?)(?:-(\d+))?\.lua$/.exec(file);
      if (!match) throw new Error(`Lua script ${file} must be named <name>-<numberOfKeys>.lua or <name>.lua`);
      const [, name, keys] = match as unknown as [string, string, string | undefined];
      const lua = expandIncludes(readFileSync(LUA_DIR + file, 'utf8'), new Set());
      return { name, numberOfKeys: keys === undefined ? undefined : Number(keys), lua: lua.replace(BULLMQ_INCLUDE, (_line, script: string) => bullmqScript(script)) };
    });
  return cache;
}

const VERSION_TAG = pkg.version.replace(/\W/g, '_');

const names = new Map<string, string>();

export function commandName(script: string): string {
  let name = names.get(script);
  if (name === undefined) {
    name = `hr_${VERSION_TAG}_${script.replace(/\W/g, '_')}`;
    names.set(script, name);
  }
  return name;
}

const registered = new WeakSet<object>();
let keyCountPerCall: Set<string> | undefined;

/** Defines every script on `redis` once; later calls are free. */
export function registerScripts(redis: Redis | Cluster): void {
  if (registered.has(redis)) return;
  for (const s of loadScripts()) {
    redis.defineCommand(commandName(s.name), s.numberOfKeys === undefined ? { lua: s.lua } : { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
  registered.add(redis);
}

type ScriptArg = string | number | Buffer;

/** Runs a registered script: `runScript(redis, 'admit', keys, args)`. */
export async function runScript<T = unknown>(
  redis: Redis | Cluster,
  name: string,
  keys: readonly string[],
  args: readonly ScriptArg[],
): Promise<T> {
  registerScripts(redis);
  const fn = (redis as unknown as Record<string, (...a: ScriptArg[]) => Promise<T>>)[commandName(name)];
  if (!fn) throw new Error(`no Lua script named ${name} in ${LUA_DIR}`);
  keyCountPerCall ??= new Set(loadScripts().filter((s) => s.numberOfKeys === undefined).map((s) => s.name));
  if (keyCountPerCall.has(name)) return fn.call(redis, keys.length, ...keys, ...args);
  return fn.call(redis, ...keys, ...args);
}
