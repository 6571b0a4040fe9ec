import { cdsGenerator } from './cds.js';
import { edsGenerator } from './eds.js';
import { DEFAULT_GENERATOR_OPTIONS, type Generator, type GeneratorOptions } from './generator.js';
import { withServerListeners } from './grpc-server.js';
import { ldsGenerator } from './lds.js';
import { rdsGenerator } from './rds.js';
import { sdsGenerator, type WorkloadSecrets } from './sds.js';

/**
 * Every generator, built for these options (they are part of what each one generates); SDS is fed
 * by the mesh's PKI when there is one.
 */
export function createGenerators(opts: GeneratorOptions = DEFAULT_GENERATOR_OPTIONS, secrets?: WorkloadSecrets): readonly Generator[] {
  return [cdsGenerator(opts), edsGenerator, withServerListeners(ldsGenerator), rdsGenerator, sdsGenerator(secrets)];
}
