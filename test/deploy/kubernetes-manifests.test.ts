/**
 * deploy/kubernetes: the manifests parse, name no namespace, grant exactly the access meshfed needs (read-only
 * discovery cluster-wide, TokenReview, Secrets only in its own namespace), keep clear of istiod's ports, and
 * install with `kubectl apply -k` (against the fake apiserver).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';

const DIR = join(import.meta.dirname, '../../deploy/kubernetes');
const KUBECTL = (() => {
  try {
    return execFileSync('which', ['kubectl'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('kubectl is required by the deploy/kubernetes tests (install it; CI installs it)');
  }
})();

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
  roleRef?: { kind: string; name: string; apiGroup: string };
  subjects?: Array<{ kind: string; name: string; namespace?: string }>;
  spec?: Record<string, unknown>;
}

function manifests(): Manifest[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) => parseAllDocuments(readFileSync(join(DIR, f), 'utf8')).map((d) => {
      if (d.errors.length > 0) throw new Error(`${f}: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS() as Manifest;
    }));
}

/** One line per granted (group, resource, name restriction, verb). */
function grants(role: Manifest): string[] {
  return (role.rules ?? []).flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) =>
    `${g || 'core'}/${res}${r.resourceNames ? `[${r.resourceNames.join(',')}]` : ''} ${v}`)))).sort();
}

describe('deploy/kubernetes manifests', () => {
  const all = manifests();
  const byKind = (kind: string) => all.filter((m) => m.kind === kind);

  it('parse into the expected objects, none with a namespace of its own', () => {
    expect(all.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual([
      'ClusterRole/meshfed-discovery', 'ClusterRole/meshfed-tokenreview',
      'ClusterRoleBinding/meshfed-discovery', 'ClusterRoleBinding/meshfed-tokenreview',
      'Deployment/meshfed', 'Role/meshfed-secrets', 'RoleBinding/meshfed-secrets', 'Service/meshfed', 'ServiceAccount/meshfed',
    ]);
    for (const m of all) expect(m.metadata.namespace, `${m.kind}/${m.metadata.name}`).toBeUndefined();
  });

  it('grant exactly read-only discovery, TokenReview, and Secrets in meshfed\'s namespace', () => {
    const read = (r: string) => ['get', 'list', 'watch'].map((v) => `${r} ${v}`);
    const role = (kind: string, name: string) => all.find((m) => m.kind === kind && m.metadata.name === name) as Manifest;
    expect(grants(role('ClusterRole', 'meshfed-discovery'))).toEqual([
      ...read('core/namespaces'), ...read('core/nodes'), ...read('core/pods'), ...read('core/services'),
      ...read('discovery.k8s.io/endpointslices'),
    ].sort());
    expect(grants(role('ClusterRole', 'meshfed-tokenreview'))).toEqual(['authentication.k8s.io/tokenreviews create']);
    expect(grants(role('Role', 'meshfed-secrets'))).toEqual([
      ...read('core/secrets'), 'core/secrets create', 'core/secrets[meshfed-ca] patch', 'core/secrets[meshfed-ca] update',
    ].sort());
    expect(all.flatMap((m) => m.rules ?? []).some((r) => [...r.apiGroups, ...r.resources, ...r.verbs].includes('*'))).toBe(false);
  });

  it('bind every role to the meshfed service account only, and only Roles by RoleBindings', () => {
    const bindings = [...byKind('ClusterRoleBinding'), ...byKind('RoleBinding')];
    expect(bindings).toHaveLength(3);
    for (const b of bindings) {
      expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: 'meshfed' }]);
      expect(b.roleRef?.kind).toBe(b.kind === 'RoleBinding' ? 'Role' : 'ClusterRole');
      expect(all.some((m) => m.kind === b.roleRef?.kind && m.metadata.name === b.roleRef.name)).toBe(true);
    }
  });

  it('run meshfed as that account on ports clear of istiod\'s, exposed by the Service', () => {
    const deployment = byKind('Deployment')[0] as Manifest;
    const pod = (deployment.spec as { template: { spec: { serviceAccountName: string; containers: Array<{ args: string[]; ports: Array<{ containerPort: number }> }> } } }).template.spec;
    expect(pod.serviceAccountName).toBe('meshfed');
    const ports = pod.containers.flatMap((c) => c.ports.map((p) => p.containerPort));
    expect(ports).toEqual([18000, 18001, 18010, 18003]);
    expect(ports.some((p) => [15010, 15012, 15014, 15017].includes(p))).toBe(false);
    expect(pod.containers[0]?.args).toEqual(expect.arrayContaining(['--xds-address=0.0.0.0:18000', '--admin-address=0.0.0.0:18001', '--xds-plaintext-address=0.0.0.0:18010', '--metadata-address=0.0.0.0:18003']));
    // The debug pages stay on the pod's loopback: not a container port, not in the Service.
    expect(pod.containers[0]?.args).toContain('--debug-address=127.0.0.1:18002');
    const service = byKind('Service')[0] as Manifest;
    expect((service.spec as { ports: Array<{ port: number }> }).ports.map((p) => p.port)).toEqual([18000, 18001, 18010, 18003]);
  });
});

describe('kubectl apply -k deploy/kubernetes', () => {
  let api: FakeApiServer;
  let dir: string;
  beforeAll(async () => {
    api = await startFakeApiServer();
    dir = mkdtempSync(join(tmpdir(), 'deploy-test-'));
  });
  afterAll(async () => {
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('installs every object, namespaced ones and the subjects in the kustomization\'s namespace', async () => {
    const { stdout } = await promisify(execFile)(KUBECTL, ['apply', '-k', DIR], {
      env: { ...process.env, KUBECONFIG: api.writeKubeconfig(dir) }, timeout: 20_000,
    });
    expect(stdout.trim().split('\n')).toHaveLength(9);
    const ns = 'meshfed-system';
    expect(api.get('v1', 'ServiceAccount', ns, 'meshfed')).toBeDefined();
    expect(api.get('apps/v1', 'Deployment', ns, 'meshfed')).toBeDefined();
    expect(api.get('v1', 'Service', ns, 'meshfed')).toBeDefined();
    expect(api.get('rbac.authorization.k8s.io/v1', 'Role', ns, 'meshfed-secrets')).toBeDefined();
    for (const [kind, name] of [['ClusterRoleBinding', 'meshfed-discovery'], ['ClusterRoleBinding', 'meshfed-tokenreview'], ['RoleBinding', 'meshfed-secrets']] as const) {
      expect(api.get('rbac.authorization.k8s.io/v1', kind, kind === 'RoleBinding' ? ns : undefined, name)?.['subjects'])
        .toEqual([{ kind: 'ServiceAccount', name: 'meshfed', namespace: ns }]);
    }
  });
});
