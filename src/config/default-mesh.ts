// The embedded mesh used when meshfed is given no configuration (see default-mesh.yaml).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Mesh } from '../gen/meshfed/v1/mesh_pb.js';
import { parseMeshText } from '../sources/file/parse.js';

/** The YAML sits next to this module; a build must copy it alongside the compiled file. */
export const DEFAULT_MESH_PATH = fileURLToPath(new URL('./default-mesh.yaml', import.meta.url));

/** Provenance for what the default mesh contributes (pass to meshToSource). */
export const DEFAULT_MESH_SOURCE = 'builtin:default-mesh';

export function loadDefaultMesh(): Mesh {
  return parseMeshText(readFileSync(DEFAULT_MESH_PATH, 'utf8'), 'default-mesh.yaml');
}
