/**
 * Loads the Lua scripts in `src/lua/` (named `<name>-<numberOfKeys>.lua`) and registers them on
 * an ioredis connection. ioredis' `defineCommand` calls EVALSHA and falls back to EVAL on
 * NOSCRIPT, so a Redis restart or failover reloads them by itself.
 *
 * Commands are registered under a name carrying this package's version, so two versions of
 * Headroom sharing one Redis never run each other's script.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Redis, Cluster } from 'ioredis';
import pkg from '../package.json' with { type: 'json' };

// This file sits one level below the package root in both src/ and dist/, so one relative
// URL finds the scripts from either.
const LUA_DIR = fileURLToPath(new URL('../src/lua/', import.meta.url));
const INCLUDE = /^--- @include "([\w/-]+)"\s*$/gm;

export interface ScriptSource {
  name: string;
  numberOfKeys: number;
  lua: string;
}

function expandIncludes(lua: string, seen: Set<string>): string {
  return lua.replace(INCLUDE, (_line, include: string) => {
    if (seen.has(include)) return '';
    seen.add(include);
    return expandIncludes(readFileSync(`${LUA_DIR}${include}.lua`, 'utf8'), seen);
  });
}

let cache: ScriptSource[] | undefined;

export function loadScripts(): ScriptSource[] {
  if (cache) return cache;
  cache = readdirSync(LUA_DIR)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const match = /^(.+)-(\d+)\.lua$/.exec(file);
      if (!match) throw new Error(`Lua script ${file} must be named <name>-<numberOfKeys>.lua`);
      const [, name, keys] = match as unknown as [string, string, string];
      return { name, numberOfKeys: Number(keys), lua: expandIncludes(readFileSync(LUA_DIR + file, 'utf8'), new Set()) };
    });
  return cache;
}

const VERSION_TAG = pkg.version.replace(/\W/g, '_');

export function commandName(script: string): string {
  return `hr_${VERSION_TAG}_${script.replace(/\W/g, '_')}`;
}

const registered = new WeakSet<object>();

/** Defines every script on `redis` once; later calls are free. */
export function registerScripts(redis: Redis | Cluster): void {
  if (registered.has(redis)) return;
  for (const s of loadScripts()) {
    redis.defineCommand(commandName(s.name), { numberOfKeys: s.numberOfKeys, lua: s.lua });
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
  return fn.call(redis, ...keys, ...args);
}
