// meshfed's authorization of xDS streams, given to the xDS server as its StreamPolicy:
//   - identity: what the credentials prove (a mesh client certificate or a service-account token),
//     or, with --insecure-dev-identity on the plaintext port, the node metadata's namespace and
//     service account; never the node metadata alone;
//   - SDS: a stream with an identity may not ask for another identity's secret (PERMISSION_DENIED);
//     one whose credentials cannot be checked now gets no SDS (UNAVAILABLE, it retries); one without
//     an identity may read only the public trust bundle, and its other secret names are answered as
//     not existing, so its CDS/EDS/LDS/RDS keep flowing (an Envoy whose TLS clusters name SDS
//     `default` would otherwise reconnect forever).
import { status as Status } from '@grpc/grpc-js';
import { TypeUrl } from '../envoy/protos.js';
import { isForeignSecret, isPublicSecret } from '../generate/sds.js';
import { clip } from '../log.js';
import type { ProxyView } from '../model/proxy.js';
import { validSpiffeId } from '../pki/identity.js';
import type { AuthOutcome, StreamPolicy, TypeGate } from '../xds/auth.js';

/** Why a withheld secret was not sent (metrics and /debug/syncz). */
export const UNAUTHENTICATED = 'unauthenticated';

const ANONYMOUS: TypeGate = {
  withholds: (name) => !isPublicSecret(name),
  reason: UNAUTHENTICATED,
  notice:
    'secrets not sent: the stream has no identity (a service-account token or a mesh client certificate over TLS, ' +
    'or --insecure-dev-identity with node metadata in development); the trust bundle and configuration are served',
};

export const meshStreamPolicy: StreamPolicy = {
  view(v: ProxyView, a: AuthOutcome): ProxyView {
    if (a.kind === 'authenticated') {
      const { spiffeId, namespace, serviceAccount } = a.identity;
      return { ...v, identity: spiffeId, namespace, serviceAccount };
    }
    const claimed =
      a.kind === 'node-metadata'
        ? validSpiffeId({ trustDomain: a.trustDomain, namespace: v.namespace, serviceAccount: v.serviceAccount })
        : undefined;
    return claimed ? { ...v, identity: claimed } : v;
  },

  gate(typeUrl: string, view: ProxyView, a: AuthOutcome): TypeGate | undefined {
    if (typeUrl !== TypeUrl.Secret) return undefined;
    const id = view.identity;
    if (id) {
      return {
        refuse(names) {
          const foreign = names.find((n) => isForeignSecret(n, id));
          return foreign === undefined
            ? undefined
            : { code: Status.PERMISSION_DENIED, reason: 'foreign-secret', details: `${id} may not read the secret ${clip(foreign)}` };
        },
      };
    }
    if (a.kind !== 'unavailable') return ANONYMOUS;
    const details = `no secrets: meshfed cannot check this stream's credentials now (${a.reason})`;
    return { refuse: () => ({ code: Status.UNAVAILABLE, reason: 'credentials-unchecked', details }) };
  },
};
