import { cdsGenerator } from './cds.js';
import { edsGenerator } from './eds.js';
import type { Generator } from './generator.js';
import { ldsGenerator } from './lds.js';
import { rdsGenerator } from './rds.js';
import { sdsGenerator } from './sds.js';

export const GENERATORS: readonly Generator[] = [cdsGenerator, edsGenerator, ldsGenerator, rdsGenerator, sdsGenerator];
