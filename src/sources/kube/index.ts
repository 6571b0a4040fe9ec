export { KUBE_DEFAULTS, KubeSource, CLUSTER_STATES } from './kube-source.js';
export type { ClusterState, ClusterStatus, KubeObserver, KubeSourceOptions, MeshSink } from './kube-source.js';
export type { GuardOptions } from './remote-guard.js';
export { localKubeConfig } from './transport.js';
