// FileSource on real files in a temp dir: first read, edits, broken edits, fixes, and editors
// that replace the file by rename.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SourceMesh } from '../../src/model/source.js';
import { FileSource, MeshFileError, type FileSourceLog } from '../../src/sources/file/index.js';

function meshText(addresses: readonly string[]): string {
  return `clusters:
  - id: c1
services:
  - name: foo
    namespace: abc
    cluster: c1
    ports: [{ name: grpc, port: 8080 }]
    endpoints:
${addresses.map((a) => `      - address: ${a}`).join('\n')}
`;
}

const BROKEN = meshText(['10.0.0.1']).replace('port: 8080', 'port: 80800');

/** How long a test waits for the source to notice an edit, polling every 20 ms. */
const WAIT = { timeout: 5000, interval: 20 };

function addresses(m: SourceMesh | undefined): string[] {
  return m?.services.get('c1/foo.abc.svc.cluster.local')?.endpoints.map((e) => e.address) ?? [];
}

class Recorder {
  meshes: SourceMesh[] = [];
  errors: (MeshFileError | null)[] = [];
  logs: { level: string; obj: object; msg: string | undefined }[] = [];
  log: FileSourceLog = {
    info: (obj, msg) => void this.logs.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => void this.logs.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => void this.logs.push({ level: 'error', obj, msg }),
  };
  get last(): SourceMesh | undefined {
    return this.meshes.at(-1);
  }
}

describe('FileSource', () => {
  let dir: string;
  let file: string;
  let rec: Recorder;
  let src: FileSource | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'meshfed-file-source-'));
    file = path.join(dir, 'mesh.yaml');
    rec = new Recorder();
  });

  afterEach(async () => {
    src?.stop();
    src = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function startOn(text: string): Promise<FileSource> {
    await writeFile(file, text);
    src = new FileSource(file, (m) => rec.meshes.push(m), { log: rec.log, onError: (e) => rec.errors.push(e) });
    await src.start();
    return src;
  }

  it('reads the file on start and pushes each edit', async () => {
    await startOn(meshText(['10.0.0.1']));
    expect(rec.meshes).toHaveLength(1);
    expect(addresses(rec.last)).toEqual(['10.0.0.1']);
    expect(rec.last?.services.get('c1/foo.abc.svc.cluster.local')?.endpoints[0]?.provenance).toEqual({ source: `file:${file}` });

    await writeFile(file, meshText(['10.0.0.1', '10.0.0.2']));
    await vi.waitFor(() => expect(addresses(rec.last)).toHaveLength(2), WAIT);
    expect(addresses(rec.last)).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(rec.errors).toEqual([]);
  });

  it('keeps the last good state through a broken edit and recovers on the fix', async () => {
    const s = await startOn(meshText(['10.0.0.1']));

    await writeFile(file, BROKEN);
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1), WAIT);
    const err = rec.errors[0];
    expect(err).toBeInstanceOf(MeshFileError);
    expect(err?.path).toBe('services[0].ports[0].port');
    expect(err?.message).toBe(`${file}:7: services[0].ports[0].port: must be between 1 and 65535`);
    expect(s.lastError).toBe(err);
    expect(rec.meshes).toHaveLength(1);
    const logged = rec.logs.find((l) => l.level === 'error');
    expect(logged?.msg).toContain('services[0].ports[0].port');

    await writeFile(file, meshText(['10.0.0.3']));
    await vi.waitFor(() => expect(rec.meshes).toHaveLength(2), WAIT);
    expect(addresses(rec.last)).toEqual(['10.0.0.3']);
    expect(rec.errors).toEqual([err, null]);
    expect(s.lastError).toBeNull();
  });

  it('picks up an editor replacing the file by rename', async () => {
    await startOn(meshText(['10.0.0.1']));
    for (const next of [['10.0.0.5'], ['10.0.0.6', '10.0.0.7']]) {
      const tmp = path.join(dir, '.mesh.yaml.swp');
      await writeFile(tmp, meshText(next));
      await rename(tmp, file);
      await vi.waitFor(() => expect(addresses(rec.last)).toEqual(next), WAIT);
    }
  });

  it('does not push when the bytes did not change', async () => {
    await startOn(meshText(['10.0.0.1']));
    await writeFile(file, meshText(['10.0.0.1'])); // same bytes, new mtime
    // A negative can only be shown by waiting: several debounce periods (50 ms) for the rewrite to be read.
    await new Promise((r) => setTimeout(r, 300));
    expect(rec.meshes).toHaveLength(1);
    await writeFile(file, meshText(['10.0.0.2']));
    await vi.waitFor(() => expect(addresses(rec.last)).toEqual(['10.0.0.2']), WAIT);
    expect(rec.meshes.map(addresses)).toEqual([['10.0.0.1'], ['10.0.0.2']]);
  });

  it('reports a deleted file and reloads when it comes back', async () => {
    await startOn(meshText(['10.0.0.1']));
    await rm(file);
    await vi.waitFor(() => expect(rec.errors).toHaveLength(1), WAIT);
    expect(rec.errors[0]?.message).toBe(`${file}: file not found`);
    await writeFile(file, meshText(['10.0.0.9']));
    await vi.waitFor(() => expect(rec.errors).toHaveLength(2), WAIT);
    expect(rec.errors[1]).toBeNull();
    expect(addresses(rec.last)).toEqual(['10.0.0.9']);
  });

  it('rejects start when the first read fails', async () => {
    await expect(startOn(BROKEN)).rejects.toThrow(/mesh\.yaml:7: services\[0\]\.ports\[0\]\.port: must be between 1 and 65535/);
    expect(rec.meshes).toEqual([]);

    const missing = new FileSource(path.join(dir, 'none.yaml'), () => undefined, { log: rec.log });
    await expect(missing.start()).rejects.toBeInstanceOf(MeshFileError);
    await expect(missing.start()).rejects.toThrow('none.yaml: file not found');
  });
});
