/**
 * The README and docs/ link into each other by relative path and heading anchor; a renamed heading
 * or a page that was never written leaves a link a reader follows to nothing (three did, into a
 * `scheduling.md` no commit ever held). Anchors are GitHub's: the heading lower-cased, punctuation
 * dropped, spaces as hyphens.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/fleet.js';

const pages = ['README.md', 'infra/README.md', ...readdirSync(join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(join(REPO_ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#{1,6}\s+(.+)$/gm)].map(([, heading]) => heading!.trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')));
}

describe('docs', () => {
  it('link only to files and headings that exist', () => {
    const broken: string[] = [];
    for (const page of pages) {
      const text = readFileSync(join(REPO_ROOT, page), 'utf8').replace(/```[\s\S]*?```/g, '');
      for (const [, link] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(link!)) continue;
        const [path, anchor] = link!.split('#') as [string, string | undefined];
        const target = path === '' ? page : normalize(join(dirname(page), path));
        if (!existsSync(join(REPO_ROOT, target))) broken.push(`${page}: ${link} (no file ${target})`);
        else if (anchor !== undefined && target.endsWith('.md') && !anchorsOf(target).has(anchor)) broken.push(`${page}: ${link} (no heading #${anchor} in ${target})`);
      }
    }
    expect(broken).toEqual([]);
  });
});
