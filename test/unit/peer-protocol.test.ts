// Port protocols of a peer's public services, as Deckhouse's updatePortProtocols derives them.
import { describe, expect, it } from 'vitest';
import { portProtocol } from '../../src/alliance/peers/protocol.js';
import { mergeConditions } from '../../src/alliance/peers/conditions.js';

describe('portProtocol', () => {
  it.each([
    ['https', 'TLS'],
    ['https-admin', 'TLS'],
    ['tls', 'TLS'],
    ['http', 'HTTP'],
    ['http-web', 'HTTP'],
    ['http2', 'HTTP2'],
    ['grpc', 'HTTP2'],
    ['grpc-web', 'HTTP2'],
    ['xhttp', 'HTTP'], // substring of the first part, as Deckhouse matches
    ['tcp-db', 'TCP'],
    ['redis', 'TCP'],
    ['', 'TCP'],
  ])('%s → %s', (name, protocol) => expect(portProtocol(name)).toBe(protocol));
});

describe('mergeConditions', () => {
  const old = {
    type: 'PublicMetadataExchangeReady',
    status: 'True',
    reason: 'Succeeded',
    message: '',
    lastTransitionTime: 't0',
    lastProbeTime: 't0',
  };
  const other = { type: 'DataplaneConnectionReady', status: 'False', reason: 'X', message: 'y', lastTransitionTime: 't0' };

  it('keeps lastTransitionTime when nothing changed, moves it when something did, and keeps other types in place', () => {
    const same = mergeConditions([other, old], [{ type: old.type, status: 'True', reason: 'Succeeded', message: '' }], 't1');
    expect(same).toEqual([other, { ...old, lastProbeTime: 't1' }]);
    const changed = mergeConditions(
      [other, old],
      [
        { type: old.type, status: 'False', reason: 'FetchFailed', message: 'down' },
        { type: 'PrivateMetadataExchangeReady', status: 'False', reason: 'AwaitingPublic', message: '' },
      ],
      't2',
    );
    expect(changed).toEqual([
      other,
      { type: old.type, status: 'False', reason: 'FetchFailed', message: 'down', lastTransitionTime: 't2', lastProbeTime: 't2' },
      {
        type: 'PrivateMetadataExchangeReady',
        status: 'False',
        reason: 'AwaitingPublic',
        message: '',
        lastTransitionTime: 't2',
        lastProbeTime: 't2',
      },
    ]);
  });
});
