// The examples for running beside istiod point at what meshfed's manifests actually serve: the
// config source and CA_ADDR name the meshfed Service's TLS xDS port and one of its certificate's
// DNS names, and keep k8s:// (without it istiod stops reading Istio's CRDs).
import { readFileSync } from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';

const read = (f: string): string => readFileSync(f, 'utf8');
const deployment = parse(read('deploy/kubernetes/deployment.yaml')) as {
  spec: { template: { spec: { containers: Array<{ args: string[] }> } } };
};
const args = deployment.spec.template.spec.containers[0]!.args;
// The Deployment names no namespace: the pod's own comes in as $(POD_NAMESPACE); kustomize installs it in meshfed-system.
const dnsNames = args
  .find((a) => a.startsWith('--server-dns-names='))!
  .split('=')[1]!
  .replaceAll('$(POD_NAMESPACE)', 'meshfed-system')
  .split(',');
type ServiceDoc = { metadata: { name: string }; spec: { ports: Array<{ name: string; port: number }> } };
const service = parseAllDocuments(read('deploy/kubernetes/service.yaml'))
  .map((d) => d.toJS() as ServiceDoc)
  .find((s) => s.metadata.name === 'meshfed')!;
const tlsPort = service.spec.ports.find((p) => p.name === 'grpc-xds')!.port;

describe('beside-istiod examples', () => {
  it('the MeshConfig fragment keeps k8s:// and reads meshfed over TLS (SIMPLE, inline PEM)', () => {
    expect(args).toContain('--xds-tls');
    const mc = (parse(read('deploy/examples/istiod-mesh-config.yaml')) as { meshConfig: { configSources: Array<Record<string, unknown>> } })
      .meshConfig;
    expect(mc.configSources[0]).toEqual({ address: 'k8s://' });
    const xds = mc.configSources[1]!;
    const [host, port] = String(xds['address']).replace('xds://', '').split(':');
    expect(dnsNames).toContain(host);
    expect(Number(port)).toBe(tlsPort);
    const tls = xds['tlsSettings'] as Record<string, string>;
    expect(tls['mode']).toBe('SIMPLE');
    expect(tls['caCertificates']).toMatch(/^-----BEGIN CERTIFICATE-----/);
  });

  it("istio-agent's CA_ADDR names meshfed's TLS port by a name on its certificate", () => {
    const [pod] = parseAllDocuments(read('deploy/examples/istio-agent-meshfed-ca.yaml')).map(
      (d) => d.toJS() as { metadata: { annotations: Record<string, string> } },
    );
    const md = (parse(pod!.metadata.annotations['proxy.istio.io/config']!) as { proxyMetadata: Record<string, string> }).proxyMetadata;
    const [host, port] = md['CA_ADDR']!.split(':');
    expect(dnsNames).toContain(host);
    expect(Number(port)).toBe(tlsPort);
    expect(md['CA_ROOT_CA']).toBeTruthy();
  });
});
