// Who is on the other end of an xDS stream, and what it may read. The xDS layer only asks: an
// authenticator says who a stream is when it opens (checked once), and the app's StreamPolicy
// turns that into the view the stream is served as and gates each type's names. What an
// identity looks like and which secrets it may read are the app's (src/auth/), not this layer's.
import type * as grpc from '@grpc/grpc-js';
import type { status as Status } from '@grpc/grpc-js';
import type { ProxyView } from '../model/proxy.js';

export interface AuthIdentity {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly via: 'certificate' | 'token' | 'node-metadata';
}

export type AuthOutcome =
  | { readonly kind: 'authenticated'; readonly identity: AuthIdentity }
  /** No credentials: configuration and the trust bundle; other secrets are answered as not existing. */
  | { readonly kind: 'anonymous' }
  /** Credentials could not be checked now (TokenReview unreachable): configuration only; SDS fails UNAVAILABLE. */
  | { readonly kind: 'unavailable'; readonly reason: string }
  /** Credentials presented and refused: the stream fails UNAUTHENTICATED at once. */
  | { readonly kind: 'rejected'; readonly reason: string }
  /** Development only: the identity is read from the node metadata of the first request. */
  | { readonly kind: 'node-metadata'; readonly trustDomain: string };

export interface StreamAuthenticator {
  authenticate(call: grpc.ServerDuplexStream<unknown, Buffer>): Promise<AuthOutcome>;
}

/** The authenticator of the plaintext port. */
export class PlaintextAuthenticator implements StreamAuthenticator {
  constructor(private readonly devIdentityTrustDomain: string | undefined) {}

  authenticate(): Promise<AuthOutcome> {
    return Promise.resolve(
      this.devIdentityTrustDomain ? { kind: 'node-metadata', trustDomain: this.devIdentityTrustDomain } : { kind: 'anonymous' },
    );
  }
}

/** Ends a stream: `reason` labels the metric, `details` is what the client reads. */
export interface Refusal {
  readonly code: Status;
  readonly reason: string;
  readonly details: string;
}

/** What one stream may ask of one type; made once per (stream, type). */
export interface TypeGate {
  /** Checked on every request of the type with the names it asks for; a refusal ends the stream. */
  refuse?(names: readonly string[]): Refusal | undefined;
  /**
   * True for a name the stream may ask for but not have: it is answered as not existing (SotW: no
   * response; delta: removed_resources) and the stream stays.
   */
  withholds?(name: string): boolean;
  /** Why names are withheld (a metric label and /debug/syncz). */
  readonly reason?: string;
  /** Logged once per stream when it first has names withheld: what it lacks and how to get it. */
  readonly notice?: string;
}

/** The app's authorization, supplied to the xDS server. */
export interface StreamPolicy {
  /** The view a stream is served as: its node's, with what its credentials prove (identity, namespace, ...). */
  view(node: ProxyView, auth: AuthOutcome): ProxyView;
  /** The gate of a type for a stream with this view; undefined: every name is open to it. */
  gate(typeUrl: string, view: ProxyView, auth: AuthOutcome): TypeGate | undefined;
}
