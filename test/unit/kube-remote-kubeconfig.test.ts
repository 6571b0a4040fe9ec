// A remote secret's kubeconfig that does not parse: the error (logged, and shown at /debug/clusters)
// says where, but never quotes the text around the fault, which may be a token or a private key.
import { describe, expect, it } from 'vitest';
import { remoteKubeConfig } from '../../src/sources/kube/transport.js';

describe('remoteKubeConfig on a kubeconfig that does not parse', () => {
  it('names the cluster, the reason and the line, without the credentials next to the fault', () => {
    const text = [
      'apiVersion: v1',
      'users:',
      '- name: u',
      '  user:',
      '    token: s3cr3t-bearer-token',
      '    client-key-data: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t',
      '  bad: [',
    ].join('\n');
    let message = '';
    try {
      remoteKubeConfig(text, 'remote-1');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^cluster remote-1: the kubeconfig does not parse: .+ \(line \d+, column \d+\)$/);
    expect(message).not.toContain('s3cr3t');
    expect(message).not.toContain('LS0tLS1');
  });
});
