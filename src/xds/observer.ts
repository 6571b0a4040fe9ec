// What the xDS layer reports as it works; the admin module turns it into metrics and logs.
import type { Limit } from './limits.js';

export interface XdsObserver {
  streamOpened(kind: StreamKind): void;
  streamClosed(kind: StreamKind): void;
  /** A response written to a stream; latencyMs is from the source change it carries, if any. */
  pushed(typeUrl: string, bytes: number, resources: number, latencyMs: number | undefined): void;
  nacked(typeUrl: string, proxyId: string, message: string): void;
  unknownType(typeUrl: string): void;
  malformed(reason: string): void;
  /** A resource encoded; changed is false when the bytes came out the same as before. */
  encoded(typeUrl: string, changed: boolean): void;
  /** The number of resources of a type in the store, across views. */
  resources(typeUrl: string, count: number): void;
  /** A stream refused for its credentials or for asking another identity's secret. */
  denied(code: string, reason: string): void;
  /** A request or stream refused, or a stream closed, at one of the limits. */
  limited(limit: Limit): void;
  /** Secret names a stream without an identity asked for: answered as not existing, the stream stays. */
  withheld(reason: string, names: number): void;
}

export type StreamKind = 'sotw' | 'delta';

export const NO_OBSERVER: XdsObserver = {
  streamOpened() {},
  streamClosed() {},
  pushed() {},
  nacked() {},
  unknownType() {},
  malformed() {},
  encoded() {},
  resources() {},
  denied() {},
  limited() {},
  withheld() {},
};
