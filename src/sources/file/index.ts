// The file source's public surface.
export { formatProblem, MeshFileError, type MeshProblem } from './errors.js';
export { FileSource, type FileSourceLog, type FileSourceOptions } from './file-source.js';
export { parseMeshBytes, parseMeshText } from './parse.js';
export { DEFAULT_DOMAIN, DEFAULT_SERVICE_ACCOUNT, type FileMesh, meshToSource } from './to-model.js';
export { validateMesh } from './validate.js';
