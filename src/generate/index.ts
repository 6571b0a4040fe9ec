import { cdsGenerator } from './cds.js';
import { edsGenerator } from './eds.js';
import { DEFAULT_GENERATOR_OPTIONS, type Generator, type GeneratorOptions } from './generator.js';
import { ldsGenerator } from './lds.js';
import { rdsGenerator } from './rds.js';
import { sdsGenerator } from './sds.js';

/** Every generator, built for these options (they are part of what each one generates). */
export function createGenerators(opts: GeneratorOptions = DEFAULT_GENERATOR_OPTIONS): readonly Generator[] {
  return [cdsGenerator(opts), edsGenerator, ldsGenerator, rdsGenerator, sdsGenerator];
}
