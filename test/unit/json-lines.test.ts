// The lines a JSON mesh description's problems get from the text scan (json-lines.ts) are the
// lines the YAML parser would give the same text: JSON is YAML, so the YAML path is the reference.
import { describe, expect, it } from 'vitest';
import { MeshFileError, parseMeshText } from '../../src/sources/file/index.js';
import { jsonLines } from '../../src/sources/file/json-lines.js';

function message(text: string): string {
  try {
    parseMeshText(text, 'm');
  } catch (e) {
    if (e instanceof MeshFileError) return e.message;
    throw e;
  }
  throw new Error('accepted');
}

describe('JSON problem lines', () => {
  it('match the YAML parser on a pretty-printed file: fields, list items, snake_case, escapes', () => {
    const mesh = {
      clusters: [{ id: 'c1', network: 'n1', root_ca_pem: 'not a pem' }],
      services: [
        {
          name: 's0',
          namespace: 'a',
          cluster: 'c1',
          ports: [{ name: 'p', port: 80 }],
          endpoints: [{ address: '10.0.0.1' }, { address: 'nope' }],
        },
        { name: 's1', namespace: 'a', cluster: 'c1', ports: [{ name: 'p', port: 0 }], 'target\u0022port': 3, endpoints: [] },
        {
          name: 's2',
          namespace: 'a',
          cluster: 'c9',
          ports: [
            { name: 'p', port: 81 },
            { name: 'p', port: 81 },
          ],
        },
      ],
    };
    const text = JSON.stringify(mesh, null, 2);
    const fromScan = message(text);
    // A leading comment makes it YAML (one line down).
    const fromYaml = message(`# yaml\n${text}`).replace(/^m:(\d+):/gm, (_, n: string) => `m:${Number(n) - 1}:`);
    expect(fromScan.split('\n').length).toBeGreaterThan(4);
    expect(fromScan).toBe(fromYaml);
  });

  it('a path not in the text gets the line of its deepest part that is', () => {
    const text = '{\n  "a": {\n    "b": [\n      1,\n      {"c": 2}\n    ]\n  },\n  "d": "x\\ny"\n}';
    expect(jsonLines(text, [['a', 'b', 1, 'c'], ['a', 'b', 1, 'missing'], ['a', 'zz'], ['d'], ['nothing']])).toEqual([
      5,
      5,
      2,
      8,
      undefined,
    ]);
  });
});
