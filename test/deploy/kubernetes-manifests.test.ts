/**
 * deploy/kubernetes: the manifests parse, name no namespace, grant exactly the access meshfed needs (read-only
 * discovery cluster-wide, TokenReview, Secrets and its Lease only in its own namespace), keep clear of istiod's
 * ports, run two replicas that pass the `restricted` Pod Security Standard, render with `kubectl kustomize`,
 * install with `kubectl apply -k` (against the fake apiserver), and start meshfed with the Deployment's args.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startFakeApiServer, type FakeApiServer } from '../fixtures/kube-apiserver/index.js';
import { waitForHttpOk } from '../helpers/child-process.js';
import { namespace } from '../helpers/kube-cluster.js';
import { freePort } from '../helpers/ports.js';

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
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(DIR, f), 'utf8')).map((d) => {
        if (d.errors.length > 0) throw new Error(`${f}: ${d.errors.map((e) => e.message).join('; ')}`);
        return d.toJS() as Manifest;
      }),
    );
}

/** One line per granted (group, resource, name restriction, verb). */
function grants(role: Manifest): string[] {
  return (role.rules ?? [])
    .flatMap((r) =>
      r.apiGroups.flatMap((g) =>
        r.resources.flatMap((res) =>
          r.verbs.map((v) => `${g || 'core'}/${res}${r.resourceNames ? `[${r.resourceNames.join(',')}]` : ''} ${v}`),
        ),
      ),
    )
    .sort();
}

describe('deploy/kubernetes manifests', () => {
  const all = manifests();
  const byKind = (kind: string) => all.filter((m) => m.kind === kind);

  it('parse into the expected objects, none with a namespace of its own, and no namespace written anywhere', () => {
    expect(all.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual([
      'ClusterRole/meshfed-discovery',
      'ClusterRole/meshfed-tokenreview',
      'ClusterRoleBinding/meshfed-discovery',
      'ClusterRoleBinding/meshfed-tokenreview',
      'Deployment/meshfed',
      'PodDisruptionBudget/meshfed',
      'Role/meshfed-leader-election',
      'Role/meshfed-secrets',
      'RoleBinding/meshfed-leader-election',
      'RoleBinding/meshfed-secrets',
      'Service/meshfed',
      'Service/meshfed-peers',
      'ServiceAccount/meshfed',
    ]);
    for (const m of all) expect(m.metadata.namespace, `${m.kind}/${m.metadata.name}`).toBeUndefined();
    // Only kustomization.yaml names the namespace; meshfed's own DNS names come from the pod's (downward API).
    const kustomized = (parseAllDocuments(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as { namespace: string })
      .namespace;
    for (const m of all) expect(JSON.stringify(m), `${m.kind}/${m.metadata.name}`).not.toContain(kustomized);
    const c = podSpec().containers[0]!;
    expect(c.env).toEqual(
      expect.arrayContaining([{ name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } }]),
    );
    expect(c.args).toEqual(
      expect.arrayContaining(['--server-dns-names=meshfed.$(POD_NAMESPACE).svc,meshfed.$(POD_NAMESPACE).svc.cluster.local']),
    );
  });

  it("grant exactly read-only discovery, TokenReview, and Secrets in meshfed's namespace", () => {
    const read = (r: string) => ['get', 'list', 'watch'].map((v) => `${r} ${v}`);
    const role = (kind: string, name: string) => all.find((m) => m.kind === kind && m.metadata.name === name) as Manifest;
    expect(grants(role('ClusterRole', 'meshfed-discovery'))).toEqual(
      [
        ...read('core/namespaces'),
        ...read('core/nodes'),
        ...read('core/pods'),
        ...read('core/services'),
        ...read('discovery.k8s.io/endpointslices'),
        ...read('networking.istio.io/serviceentries'),
        ...read('deckhouse.io/istiofederations'),
        ...read('deckhouse.io/istiomulticlusters'),
        // Status only, and only the Lease holder writes it: the CRs' specs stay the operator's.
        'deckhouse.io/istiofederations/status patch',
        'deckhouse.io/istiomulticlusters/status patch',
      ].sort(),
    );
    expect(grants(role('ClusterRole', 'meshfed-tokenreview'))).toEqual(['authentication.k8s.io/tokenreviews create']);
    expect(grants(role('Role', 'meshfed-secrets'))).toEqual(
      [...read('core/secrets'), 'core/secrets create', 'core/secrets[meshfed-ca] patch', 'core/secrets[meshfed-ca] update'].sort(),
    );
    expect(grants(role('Role', 'meshfed-leader-election'))).toEqual([
      'coordination.k8s.io/leases create',
      'coordination.k8s.io/leases[meshfed-leader] get',
      'coordination.k8s.io/leases[meshfed-leader] update',
    ]);
    expect(all.flatMap((m) => m.rules ?? []).some((r) => [...r.apiGroups, ...r.resources, ...r.verbs].includes('*'))).toBe(false);
  });

  it('bind every role to the meshfed service account only, and only Roles by RoleBindings', () => {
    const bindings = [...byKind('ClusterRoleBinding'), ...byKind('RoleBinding')];
    expect(bindings).toHaveLength(4);
    for (const b of bindings) {
      expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: 'meshfed' }]);
      expect(b.roleRef?.kind).toBe(b.kind === 'RoleBinding' ? 'Role' : 'ClusterRole');
      expect(all.some((m) => m.kind === b.roleRef?.kind && m.metadata.name === b.roleRef.name)).toBe(true);
    }
  });

  it("run meshfed as that account on ports clear of istiod's, exposed by the Services; the debug port is not published", () => {
    const pod = podSpec();
    expect(pod.serviceAccountName).toBe('meshfed');
    const ports = pod.containers.flatMap((c) => c.ports.map((p) => `${p.name}=${p.containerPort}`));
    expect(ports).toEqual(['grpc-xds=18000', 'http-admin=18001', 'grpc-xds-plain=18010', 'metadata=18003', 'api-proxy=18443']);
    expect(ports.some((p) => /=(15010|15012|15014|15017|18002)$/.test(p))).toBe(false);
    expect(pod.containers[0]?.args).toEqual(
      expect.arrayContaining([
        '--xds-address=0.0.0.0:18000',
        '--admin-address=0.0.0.0:18001',
        '--xds-plaintext-address=0.0.0.0:18010',
        '--metadata-address=0.0.0.0:18003',
        '--api-proxy-address=0.0.0.0:18443',
      ]),
    );
    // The debug pages stay on the pod's loopback: not a container port, not in any Service.
    expect(pod.containers[0]?.args).toContain('--debug-address=127.0.0.1:18002');
    const servicePorts = (name: string) =>
      (
        all.find((m) => m.kind === 'Service' && m.metadata.name === name)!.spec as {
          ports: Array<{ name: string; port: number; targetPort: string }>;
        }
      ).ports.map((p) => `${p.name}=${p.port}->${p.targetPort}`);
    expect(servicePorts('meshfed')).toEqual([
      'grpc-xds=18000->grpc-xds',
      'http-admin=18001->http-admin',
      'grpc-xds-plain=18010->grpc-xds-plain',
    ]);
    // What peer clusters reach, alone in its own Service so it can be exposed without xDS or admin.
    expect(servicePorts('meshfed-peers')).toEqual(['metadata=18003->metadata', 'api-proxy=18443->api-proxy']);
  });

  it('run two replicas, spread over nodes where possible, and keep one through voluntary disruptions', () => {
    const deployment = byKind('Deployment')[0]!.spec as { replicas: number; selector: { matchLabels: Record<string, string> } };
    expect(deployment.replicas).toBe(2);
    const podLabels = deploymentSpec().template.metadata.labels;
    const pdb = byKind('PodDisruptionBudget')[0]!.spec as { minAvailable: number; selector: { matchLabels: Record<string, string> } };
    expect(pdb.minAvailable).toBe(1);
    expect(podLabels).toMatchObject(pdb.selector.matchLabels);
    expect(podSpec().affinity).toEqual({
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 100,
            podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: deployment.selector.matchLabels } },
          },
        ],
      },
    });
    expect(podSpec().containers[0]!.env).toEqual(
      expect.arrayContaining([{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }]),
    );
  });

  it('pass the restricted Pod Security Standard (and the check catches what it forbids)', () => {
    expect(restrictedViolations(podSpec())).toEqual([]);
    const broken = (f: (p: PodSpec) => void): string[] => {
      const p = structuredClone(podSpec());
      f(p);
      return restrictedViolations(p);
    };
    expect(broken((p) => delete p.securityContext!.seccompProfile)).toEqual([
      'containers[0] (meshfed): seccompProfile must be RuntimeDefault or Localhost',
    ]);
    expect(broken((p) => (p.containers[0]!.securityContext!.allowPrivilegeEscalation = true))).toEqual([
      'containers[0] (meshfed): allowPrivilegeEscalation must be false',
    ]);
    expect(broken((p) => (p.containers[0]!.securityContext!.capabilities = { drop: ['NET_RAW'] }))).toEqual([
      'containers[0] (meshfed): capabilities.drop must include ALL',
    ]);
    expect(broken((p) => (p.securityContext!.runAsUser = 0))).toEqual(['containers[0] (meshfed): runAsUser must not be 0']);
    expect(broken((p) => (p.hostNetwork = true))).toEqual(['hostNetwork must not be set']);
    expect(broken((p) => (p.volumes = [{ name: 'h', hostPath: { path: '/' } }]))).toEqual(['volume h: hostPath is not allowed']);
  });
});

interface Container {
  name: string;
  args: string[];
  env?: unknown[];
  ports: Array<{ name: string; containerPort: number; hostPort?: number }>;
  securityContext?: SecurityContext;
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  seccompProfile?: { type: string };
  capabilities?: { add?: string[]; drop?: string[] };
  procMount?: string;
  windowsOptions?: { hostProcess?: boolean };
}
interface PodSpec {
  serviceAccountName: string;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  securityContext?: SecurityContext & { sysctls?: unknown[] };
  affinity?: unknown;
  volumes?: Array<Record<string, unknown> & { name: string }>;
  containers: Container[];
  initContainers?: Container[];
}

function deploymentSpec(): { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } {
  return manifests().find((m) => m.kind === 'Deployment')!.spec as ReturnType<typeof deploymentSpec>;
}
const podSpec = (): PodSpec => deploymentSpec().template.spec;

/**
 * The Pod Security Standards' `restricted` level (which includes `baseline`), as the PodSecurity admission
 * plugin checks a pod: https://kubernetes.io/docs/concepts/security/pod-security-standards/
 */
function restrictedViolations(pod: PodSpec): string[] {
  const out: string[] = [];
  for (const k of ['hostNetwork', 'hostPID', 'hostIPC'] as const) if (pod[k]) out.push(`${k} must not be set`);
  if (pod.securityContext?.sysctls?.length) out.push('sysctls must not be set');
  const allowedVolumes = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
  for (const v of pod.volumes ?? []) {
    for (const type of Object.keys(v).filter((k) => k !== 'name'))
      if (!allowedVolumes.includes(type)) out.push(`volume ${v.name}: ${type} is not allowed`);
  }
  const podSc = pod.securityContext ?? {};
  const containers = [
    ...(pod.initContainers ?? []).map((c, i) => [`initContainers[${i}]`, c] as const),
    ...pod.containers.map((c, i) => [`containers[${i}]`, c] as const),
  ];
  for (const [path, c] of containers) {
    const where = `${path} (${c.name})`;
    const sc = c.securityContext ?? {};
    if (sc.privileged) out.push(`${where}: privileged must not be set`);
    if (sc.windowsOptions?.hostProcess || podSc.windowsOptions?.hostProcess) out.push(`${where}: hostProcess must not be set`);
    if (sc.procMount && sc.procMount !== 'Default') out.push(`${where}: procMount must be Default`);
    if (c.ports.some((p) => p.hostPort)) out.push(`${where}: hostPort must not be set`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${where}: allowPrivilegeEscalation must be false`);
    if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) !== true) out.push(`${where}: runAsNonRoot must be true`);
    if ((sc.runAsUser ?? podSc.runAsUser) === 0) out.push(`${where}: runAsUser must not be 0`);
    const seccomp = (sc.seccompProfile ?? podSc.seccompProfile)?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`${where}: seccompProfile must be RuntimeDefault or Localhost`);
    if (!sc.capabilities?.drop?.includes('ALL')) out.push(`${where}: capabilities.drop must include ALL`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') out.push(`${where}: capability ${cap} must not be added`);
  }
  return out;
}

describe('kubectl apply -k deploy/kubernetes', () => {
  let api: FakeApiServer;
  let dir: string;
  beforeAll(async () => {
    api = await startFakeApiServer();
    api.upsert(namespace('kube-system')); // every real cluster has it; its uid is the cluster UUID
    dir = mkdtempSync(join(tmpdir(), 'deploy-test-'));
  });
  afterAll(async () => {
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("kubectl kustomize renders every object, the namespaced ones in the kustomization's namespace", async () => {
    const { stdout } = await promisify(execFile)(KUBECTL, ['kustomize', DIR], { timeout: 20_000 });
    const rendered = parseAllDocuments(stdout).map((d) => d.toJS() as Manifest);
    expect(rendered).toHaveLength(15);
    for (const m of rendered)
      expect(m.metadata.namespace, `${m.kind}/${m.metadata.name}`).toBe(
        m.kind.startsWith('Cluster') || m.kind === 'CustomResourceDefinition' ? undefined : 'meshfed-system',
      );
  });

  it("installs every object, namespaced ones and the subjects in the kustomization's namespace", async () => {
    const { stdout } = await promisify(execFile)(KUBECTL, ['apply', '-k', DIR], {
      env: { ...process.env, KUBECONFIG: api.writeKubeconfig(dir) },
      timeout: 20_000,
    });
    expect(stdout.trim().split('\n')).toHaveLength(15);
    const ns = 'meshfed-system';
    expect(api.get('v1', 'ServiceAccount', ns, 'meshfed')).toBeDefined();
    expect(api.get('apps/v1', 'Deployment', ns, 'meshfed')).toBeDefined();
    expect(api.get('policy/v1', 'PodDisruptionBudget', ns, 'meshfed')).toBeDefined();
    expect(api.get('v1', 'Service', ns, 'meshfed')).toBeDefined();
    expect(api.get('v1', 'Service', ns, 'meshfed-peers')).toBeDefined();
    expect(api.get('rbac.authorization.k8s.io/v1', 'Role', ns, 'meshfed-secrets')).toBeDefined();
    expect(api.get('rbac.authorization.k8s.io/v1', 'Role', ns, 'meshfed-leader-election')).toBeDefined();
    for (const [kind, name] of [
      ['ClusterRoleBinding', 'meshfed-discovery'],
      ['ClusterRoleBinding', 'meshfed-tokenreview'],
      ['RoleBinding', 'meshfed-secrets'],
      ['RoleBinding', 'meshfed-leader-election'],
    ] as const) {
      expect(api.get('rbac.authorization.k8s.io/v1', kind, kind === 'RoleBinding' ? ns : undefined, name)?.['subjects']).toEqual([
        { kind: 'ServiceAccount', name: 'meshfed', namespace: ns },
      ]);
    }
  });

  it("the installed Deployment's args start meshfed: it leads on its Lease and serves xDS TLS and the api-proxy for the namespace's DNS names", async () => {
    const ns = 'meshfed-system';
    const container = (api.get('apps/v1', 'Deployment', ns, 'meshfed')!['spec'] as ReturnType<typeof deploymentSpec>).template.spec
      .containers[0]!;
    const env: Record<string, string> = { POD_NAME: 'meshfed-7d4b9-x2x9q', POD_NAMESPACE: ns }; // what the downward API gives
    const ports = new Map<string, number>();
    // $(VAR) expanded as the kubelet does; the listen ports moved to free loopback ones for this machine.
    const args = await Promise.all(
      container.args.map(async (a) => {
        const expanded = a.replace(/\$\((\w+)\)/g, (m, v: string) => env[v] ?? m);
        const addr = /^(--[\w-]+-address)=0\.0\.0\.0:\d+$/.exec(expanded);
        if (!addr) return expanded;
        const port = await freePort();
        ports.set(addr[1]!, port);
        return `${addr[1]}=127.0.0.1:${port}`;
      }),
    );
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args, '--kubeconfig', api.writeKubeconfig(dir)], {
      cwd: join(DIR, '../..'),
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const admin = ports.get('--admin-address')!;
      await waitForHttpOk(proc, `http://127.0.0.1:${admin}/readyz`, () => out, 40_000);
      expect(api.get('coordination.k8s.io/v1', 'Lease', ns, 'meshfed-leader')?.['spec']).toMatchObject({ holderIdentity: env['POD_NAME'] });
      const sanOf = (port: number, alpn: string) =>
        new Promise<string>((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: [alpn] }, () => {
            resolve(s.getPeerCertificate().subjectaltname ?? '');
            s.destroy();
          });
          s.on('error', reject);
        });
      const san = await sanOf(ports.get('--xds-address')!, 'h2');
      expect(san.split(', ')).toEqual(expect.arrayContaining([`DNS:meshfed.${ns}.svc`, `DNS:meshfed.${ns}.svc.cluster.local`]));
      // The api-proxy serves TLS too, with a mesh CA certificate for the peers' Service.
      const proxySan = await sanOf(ports.get('--api-proxy-address')!, 'http/1.1');
      expect(proxySan.split(', ')).toEqual(
        expect.arrayContaining([`DNS:meshfed-peers.${ns}.svc`, `DNS:meshfed-peers.${ns}.svc.cluster.local`]),
      );
    } finally {
      proc.kill('SIGKILL');
    }
  }, 60_000);
});
