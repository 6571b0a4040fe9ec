// What the README and the examples tell a user to open or type exists in a clone: links stay inside the
// repository (a clone has no ../shared), and every flag of a `meshfed serve|agent …` command they show is one
// that command takes.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(import.meta.dirname, '../..');
const read = (rel: string): string => readFileSync(path.join(repo, rel), 'utf8');
const markdown = ['README.md', ...readdirSync(path.join(repo, 'docs')).map((f) => `docs/${f}`)];
const examples = readdirSync(path.join(repo, 'deploy/examples')).map((f) => `deploy/examples/${f}`);

describe('documentation', () => {
  it('links and paths in the README and docs/ point inside the repository, at files that exist', () => {
    const broken: string[] = [];
    for (const file of markdown) {
      const text = read(file);
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)[^)]*\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue; // https:, mailto:
        const abs = path.resolve(repo, path.dirname(file), target!);
        if (!abs.startsWith(repo + path.sep) || !existsSync(abs)) broken.push(`${file}: ](${target})`);
      }
      for (const [, p] of text.matchAll(/`(\.\.\/[^`]*)`/g)) broken.push(`${file}: \`${p}\``);
    }
    expect(broken).toEqual([]);
    expect(read('README.md')).toContain('](docs/ARCHITECTURE.md)');
  });

  it('every flag of a meshfed command shown in the README and deploy/examples exists', () => {
    const help = { serve: '', agent: '' };
    for (const cmd of ['serve', 'agent'] as const) {
      help[cmd] = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', cmd, '--help'], { cwd: repo, encoding: 'utf8' });
    }
    const unknown: string[] = [];
    let shown = 0;
    for (const file of ['README.md', ...examples]) {
      // A command runs to the end of its code span or line; a trailing backslash continues it.
      for (const [, cmd, args] of read(file).matchAll(/meshfed (serve|agent)\b((?:[^`\n\\]|\\\n)*)/g)) {
        for (const [flag] of args!.matchAll(/--[a-z][a-z-]*/g)) {
          shown++;
          if (!new RegExp(`(^|[ ,])${flag}([ ,=]|$)`, 'm').test(help[cmd as 'serve' | 'agent']))
            unknown.push(`${file}: meshfed ${cmd} ${flag}`);
        }
      }
    }
    expect(unknown).toEqual([]);
    expect(shown).toBeGreaterThan(5);
  });
});
