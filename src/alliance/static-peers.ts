// A fixed PeerDirectory: the peers' public metadata by cluster UUID. The peer controller (IstioFederation CRs and
// mesh-file `federations:`) supplies the live one; this serves tests and a meshfed that has no peers yet.
import type { PeerDirectory, PublicMetadata } from './types.js';

export class StaticPeerDirectory implements PeerDirectory {
  private readonly byUuid: ReadonlyMap<string, PublicMetadata>;

  constructor(peers: Iterable<PublicMetadata> = []) {
    this.byUuid = new Map([...peers].map((p) => [p.clusterUUID, p]));
  }

  publicMetadata(clusterUUID: string): PublicMetadata | undefined {
    return this.byUuid.get(clusterUUID);
  }
}
