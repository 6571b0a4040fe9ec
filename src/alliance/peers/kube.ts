// IstioFederation and IstioMulticluster custom resources as a peer origin: watched through the kube source's
// guarded informer (size limits, backoff), and their /status written with a JSON merge patch.
import https from 'node:https';
import http from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { DEFAULT_BACKOFF, ResourceInformer } from '../../sources/kube/informer.js';
import { type KubeObj, pathOf } from '../../sources/kube/objects.js';
import { DEFAULT_LIMITS, KubeClient } from '../../sources/kube/transport.js';
import { type PeerStatus, type PeerController, REDACTED_USER, type StatusSink } from './controller.js';

interface IstioPeerObj extends KubeObj {
  readonly metadata: KubeObj['metadata'] & { readonly creationTimestamp?: string };
  readonly spec: {
    trustDomain?: string;
    metadataEndpoint: string;
    metadata?: { ca?: string; insecureSkipVerify?: boolean };
    enableIngressGateway?: boolean;
  };
  readonly status?: { conditions?: unknown[]; metadataCache?: { public?: unknown; private?: unknown } };
}

type PeerCrd = 'IstioFederation' | 'IstioMulticluster';
const DISCOVERY_RETRY_MS = 60_000;

export class IstioPeerWatch implements StatusSink {
  /** By informer key (`/<name>`: cluster-scoped). */
  private readonly objects = new Map<string, IstioPeerObj>();
  private readonly informer: ResourceInformer<IstioPeerObj>;
  private readonly path: string;
  private controller: PeerController | undefined;
  private readonly client: KubeClient;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly kc: KubeConfig,
    private readonly log: Logger,
    private readonly kind: PeerCrd = 'IstioFederation',
  ) {
    const path = (this.path = pathOf(kind));
    const client = (this.client = new KubeClient(kc, DEFAULT_LIMITS, (k, reason, name) =>
      log.warn({ kind: k, object: name, reason }, `${kind} ignored`),
    ));
    this.informer = new ResourceInformer<IstioPeerObj>(
      client,
      kind,
      path,
      {
        set: (obj, key) => {
          if (obj) this.objects.set(key, obj);
          else this.objects.delete(key);
          this.push();
        },
        listed: () => this.push(),
        health: () => undefined,
      },
      DEFAULT_BACKOFF,
      log.child({ kind }),
    );
  }

  /** Watches once the apiserver serves the CRD (checked every minute until then, quietly). */
  start(controller: PeerController): void {
    this.controller = controller;
    void this.discover();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.informer.stop();
    this.client.close();
  }

  private async discover(): Promise<void> {
    let served: boolean | undefined;
    try {
      served = (await this.client.groupVersions('deckhouse.io')).includes('v1alpha1');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot read the deckhouse.io API group; retrying');
    }
    if (this.stopped) return;
    if (served) {
      this.informer.start();
      return;
    }
    this.log.debug(`deckhouse.io/v1alpha1 is not served (${this.kind} CRD not installed): retrying in a minute`);
    // No CRD, no CR: none of these peers is declared (so a writer may remove what it wrote for ones that are gone).
    if (served === false && this.kind === 'IstioMulticluster') this.controller?.setPeers('kube', [], 'multicluster');
    else if (served === false) this.controller?.setPeers('kube', []);
    this.retry = setTimeout(() => void this.discover(), DISCOVERY_RETRY_MS);
    this.retry.unref();
  }

  conditions(name: string): readonly unknown[] | undefined {
    const c = this.objects.get(`/${name}`)?.status?.conditions;
    return Array.isArray(c) ? c : undefined;
  }

  metadataCache(name: string): { public?: unknown; private?: unknown } | undefined {
    const c = this.objects.get(`/${name}`)?.status?.metadataCache;
    return typeof c === 'object' && c !== null ? c : undefined;
  }

  async patch(name: string, status: PeerStatus): Promise<void> {
    const url = new URL(`${this.kc.getCurrentCluster()?.server ?? ''}${this.path}/${encodeURIComponent(name)}/status`);
    const opts: https.RequestOptions = {
      method: 'PATCH',
      headers: { 'content-type': 'application/merge-patch+json', accept: 'application/json' },
    };
    await this.kc.applyToHTTPSOptions(opts);
    const body = JSON.stringify({ status });
    await new Promise<void>((resolve, reject) => {
      const req = (url.protocol === 'http:' ? http : https).request(url, opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          res.statusCode === 200
            ? resolve()
            : reject(new Error(`PATCH ${url.pathname}: HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 200)}`)),
        );
        res.on('error', reject);
      });
      req.setTimeout(DEFAULT_LIMITS.requestTimeoutMs, () => req.destroy(new Error(`PATCH ${url.pathname}: no answer`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Status writes change the objects too; only spec changes matter to the controller (it compares specs). */
  private push(): void {
    if (!this.informer.synced || !this.controller) return;
    const objs = [...this.objects.values()];
    const metadata = (o: IstioPeerObj) => ({ ca: o.spec.metadata?.ca, insecureSkipVerify: o.spec.metadata?.insecureSkipVerify });
    // A user or password in the URL is refused (the controller says so on the CR), and never carried on: the endpoint
    // is in logs, metrics, /debug/peers and status.
    const endpoint = (o: IstioPeerObj): string => {
      try {
        const u = new URL(o.spec.metadataEndpoint);
        if (u.username === '' && u.password === '') return o.spec.metadataEndpoint;
        u.username = REDACTED_USER;
        u.password = '';
        return u.toString();
      } catch {
        return o.spec.metadataEndpoint;
      }
    };
    const createdAt = (o: IstioPeerObj) => {
      const t = Date.parse(o.metadata.creationTimestamp ?? '');
      return Number.isNaN(t) ? {} : { createdAt: t };
    };
    if (this.kind === 'IstioMulticluster') {
      // enableIngressGateway defaults to true (the CRD's default; also when the CRD is not the one that sets it).
      this.controller.setPeers(
        'kube',
        objs.map((o) => ({
          name: o.metadata.name,
          metadataEndpoint: endpoint(o),
          metadata: metadata(o),
          enableIngressGateway: o.spec.enableIngressGateway !== false,
          ...createdAt(o),
        })),
        'multicluster',
      );
    } else {
      this.controller.setPeers(
        'kube',
        objs.map((o) => ({
          name: o.metadata.name,
          trustDomain: o.spec.trustDomain ?? '',
          metadataEndpoint: endpoint(o),
          metadata: metadata(o),
          ...createdAt(o),
        })),
      );
    }
  }
}
