// Golden tests: the resources each kind of proxy gets for each topology, compared exactly with
// the reviewed JSON in test/golden/*.json (UPDATE_GOLDEN=1 rewrites them), and every one
// checked against the protoc-gen-validate rules of Envoy's protos.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { VIEW_RESOURCES } from '../../src/generate/generator.js';
import { createGenerators } from '../../src/generate/index.js';
import type { Endpoint, MeshSnapshot } from '../../src/model/mesh.js';
import { proxyOf } from '../../src/model/proxy.js';
import { Registry } from '../../src/registry/registry.js';
import { parseMeshText } from '../../src/sources/file/parse.js';
import { meshToSource } from '../../src/sources/file/to-model.js';
import { validateResource } from '../../src/validate/index.js';
import { encodeEntry } from '../../src/xds/resource.js';
import { CASES, type GoldenCase } from './cases.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function snapshotOf(mesh: Record<string, unknown>, patch: Readonly<Record<string, Partial<Endpoint>>> = {}): MeshSnapshot {
  let snapshot: MeshSnapshot | undefined;
  const registry = new Registry({ quietMs: 0, maxMs: 0 }, (s) => (snapshot = s), pino({ level: 'silent' }));
  registry.setSource('golden', meshToSource(parseMeshText(JSON.stringify(mesh), 'golden.json'), 'file:golden.json'));
  registry.flush();
  const endpoints = new Map([...snapshot!.endpoints].map(([h, eps]) => [h, eps.map((e) => ({ ...e, ...patch[e.address] }))]));
  return { ...snapshot!, endpoints };
}

interface Rendered {
  readonly typeUrl: string;
  readonly name: string;
  readonly body: Record<string, unknown>;
}

function render(c: GoldenCase): Rendered[] {
  const mesh = snapshotOf(c.mesh, c.patch);
  const view = proxyOf(c.node).view;
  const out: Rendered[] = [];
  for (const gen of createGenerators({ sdsConfig: c.sdsConfig ?? 'ads' })) {
    for (const hostname of [VIEW_RESOURCES, ...[...mesh.services.keys()].sort()]) {
      for (const r of gen.generate(mesh, view, hostname)) out.push({ typeUrl: gen.typeUrl, name: r.name, body: r.body });
    }
  }
  return out;
}

describe.each(CASES)('golden $name', (c) => {
  const rendered = render(c);

  it('matches the reviewed golden file', () => {
    const actual = { about: c.about, resources: rendered.map((r) => encodeEntry(r.typeUrl, r.name, r.body).toJSON()) };
    const file = path.join(here, `${c.name}.json`);
    if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(file, JSON.stringify(actual, null, 2) + '\n');
    expect(actual).toEqual(JSON.parse(readFileSync(file, 'utf8')));
  });

  it("passes the validate rules of Envoy's protos", () => {
    expect(rendered.length).toBeGreaterThan(0);
    for (const r of rendered) expect({ name: r.name, errors: validateResource(r.typeUrl, r.body) }).toEqual({ name: r.name, errors: [] });
  });
});
