import { cdsGenerator } from './cds.js';
import { edsGenerator } from './eds.js';
import type { Generator } from './generator.js';
import { withServerListeners } from './grpc-server.js';
import { ldsGenerator } from './lds.js';
import { rdsGenerator } from './rds.js';
import { sdsGenerator, type WorkloadSecrets } from './sds.js';

export const GENERATORS: readonly Generator[] = [cdsGenerator, edsGenerator, withServerListeners(ldsGenerator), rdsGenerator, sdsGenerator(undefined)];

/** The generators, with SDS fed by the mesh's PKI when there is one. */
export function generatorsWith(secrets: WorkloadSecrets | undefined): readonly Generator[] {
  return [...GENERATORS.slice(0, -1), sdsGenerator(secrets)];
}
