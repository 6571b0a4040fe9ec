/**
 * The alliance layer's shared vocabulary: what clusters publish about themselves and how they know each other.
 * Field names are Deckhouse's (shared/reference/deckhouse.md §2), so a Deckhouse peer reads ours unchanged.
 */

/** `/metadata/public/public.json`. */
export interface PublicMetadata {
  clusterUUID: string;
  /** PEM, Deckhouse's label `ED25519 PUBLIC KEY` (PKIX body). */
  authnKeyPub: string;
  /** PEM root certificate(s) of the cluster's mesh CA. */
  rootCA: string;
}

export interface IngressGateway {
  address: string;
  port: number;
}

export interface PublicServicePort {
  name: string;
  port: number;
  /** Derived locally from the port name (Deckhouse's `updatePortProtocols`); never on the wire from a peer. */
  protocol?: string;
}

export interface PublicService {
  /** `<svc>.<ns>.svc.<clusterDomain>` */
  hostname: string;
  ports: PublicServicePort[];
}

/** `/metadata/private/federation.json` (scope `private-federation`). */
export interface FederationMetadata {
  ingressGateways?: IngressGateway[];
  publicServices?: PublicService[];
}

/** `/metadata/private/multicluster.json` (scope `private-multicluster`). */
export interface MulticlusterMetadata {
  ingressGateways?: IngressGateway[];
  apiHost: string;
  networkName: string;
  clusterID?: string;
}

export type TokenScope = 'private-federation' | 'private-multicluster' | 'api';

/**
 * The allow-list for incoming tokens: the peers *this* cluster has an IstioFederation / IstioMulticluster for
 * (or a mesh-file entry), with the public metadata fetched from them. A token whose `sub` is not here is refused.
 */
export interface PeerDirectory {
  /** With a scope: only a peer of the kind the scope is for (`api`, `private-multicluster`: multicluster peers; `private-federation`: federation peers). */
  publicMetadata(clusterUUID: string, scope?: TokenScope): PublicMetadata | undefined;
}

/** Mints a compact EdDSA JWS for a peer (`aud`), with this cluster's UUID as `sub`. */
export type TokenMinter = (audience: string, scope: TokenScope, ttlSeconds: number) => Promise<string>;

/** How to trust a peer's metadata endpoint (and, for multicluster, its api-proxy): the CR's `spec.metadata`. */
export interface PeerEndpointTrust {
  /** PEM CA for the endpoint's certificate. */
  readonly ca?: string;
  /** Skip verification (only when `ca` is empty). */
  readonly insecureSkipVerify?: boolean;
}

/**
 * One federation peer, as an IstioFederation's spec (Deckhouse's field names) or a mesh file's
 * `federations:` entry declares it.
 */
export interface FederationPeerSpec {
  /** The CR's (or entry's) name. */
  readonly name: string;
  /** The peer's trust domain (= its cluster domain); must differ from ours. */
  readonly trustDomain: string;
  /** Base URL of the peer's metadata, e.g. `https://istio-metadata.example.com/metadata/`. */
  readonly metadataEndpoint: string;
  readonly metadata?: PeerEndpointTrust;
  /** When it was declared (the CR's creationTimestamp, ms): of two peers claiming one clusterUUID, the first keeps it. */
  readonly createdAt?: number;
}

/**
 * One multicluster peer (same trust domain), as an IstioMulticluster's spec or a mesh file's `multiclusters:` entry
 * declares it. Its services and endpoints are discovered through its api-proxy, as a remote cluster.
 */
export interface MulticlusterPeerSpec {
  readonly name: string;
  readonly metadataEndpoint: string;
  /** Also the TLS settings toward the peer's api-proxy (`https://<apiHost>`), as in Deckhouse's remote secret. */
  readonly metadata?: PeerEndpointTrust;
  /** Reach the peer's pods through its ingress gateways (default true); false: a flat network, pod IPs directly. */
  readonly enableIngressGateway: boolean;
  /** As FederationPeerSpec's. */
  readonly createdAt?: number;
}
