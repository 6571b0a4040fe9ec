// TLS for the xDS port: a serving certificate from the mesh CA, re-issued at half-life, and
// optional client certificates verified against the mesh roots (a proxy may use a token instead).
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';

export interface ServingCertificate {
  readonly certChainPem: string;
  readonly privateKeyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface XdsTlsSource {
  /** A fresh serving certificate for meshfed's names. */
  issue(): ServingCertificate;
  /** The roots a client certificate must chain to. */
  roots(): readonly string[];
}

export class XdsServerCredentials extends grpc.ServerCredentials {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: XdsTlsSource,
    private readonly log: Logger,
  ) {
    // A client certificate is asked for but optional; grpc-js exposes it to the handler only if it verified.
    super({ requestCert: true, rejectUnauthorized: false }, undefined);
    this.refresh();
  }

  /** Re-issues the serving certificate and re-reads the roots; call when the roots change. */
  refresh(): void {
    clearTimeout(this.timer);
    const cert = this.source.issue();
    this.updateSecureContextOptions({ ca: [...this.source.roots()], cert: cert.certChainPem, key: cert.privateKeyPem });
    // Half of the remaining lifetime (notBefore is backdated for clock skew).
    const due = Math.max(1000, (cert.notAfter.getTime() - Date.now()) / 2);
    this.timer = setTimeout(() => this.refresh(), Math.min(due, 2 ** 31 - 1));
    this.timer.unref();
    this.log.info({ notAfter: cert.notAfter.toISOString() }, 'xDS serving certificate issued');
  }

  close(): void {
    clearTimeout(this.timer);
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}
