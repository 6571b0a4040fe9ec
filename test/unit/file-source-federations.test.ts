// The mesh file's `federations:` (Deckhouse's IstioFederation spec fields): parsed into peer specs, and
// every mistake reported with its path.
import { describe, expect, it } from 'vitest';
import { MeshFileError, meshToSource, parseMeshText } from '../../src/sources/file/index.js';

const parse = (federations: unknown): ReturnType<typeof parseMeshText> => parseMeshText(JSON.stringify({ federations }), 'mesh.json');

function problems(federations: unknown): string[] {
  try {
    parse(federations);
  } catch (err) {
    if (err instanceof MeshFileError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  throw new Error('accepted');
}

describe('mesh file federations', () => {
  it("become peer specs with Deckhouse's field names", () => {
    const mesh = meshToSource(
      parse([
        {
          name: 'cluster-c',
          trustDomain: 'cluster-c.local',
          metadataEndpoint: 'http://10.0.0.3:8080/metadata/',
          metadata: { insecureSkipVerify: true },
        },
        {
          name: 'cluster-b',
          trustDomain: 'cluster-b.local',
          metadataEndpoint: 'https://istio-metadata.b.example.com/metadata/',
          metadata: { ca: 'PEM' },
        },
      ]),
      'file:mesh.json',
    );
    expect(mesh.federations).toEqual([
      {
        name: 'cluster-b',
        trustDomain: 'cluster-b.local',
        metadataEndpoint: 'https://istio-metadata.b.example.com/metadata/',
        metadata: { ca: 'PEM', insecureSkipVerify: undefined },
      },
      {
        name: 'cluster-c',
        trustDomain: 'cluster-c.local',
        metadataEndpoint: 'http://10.0.0.3:8080/metadata/',
        metadata: { ca: undefined, insecureSkipVerify: true },
      },
    ]);
  });

  it('report every bad entry with its path', () => {
    expect(
      problems([
        { name: 'b', trustDomain: 'b.local', metadataEndpoint: 'https://b.example.com/metadata/' },
        { name: 'b', trustDomain: 'b local', metadataEndpoint: 'ftp://b.example.com/' },
        { name: '', trustDomain: '', metadataEndpoint: 'https://b.example.com/metadata/?x=1' },
        { name: 'c', trustDomain: 'c.local', metadataEndpoint: 'https://c.example.com/', metadata: { insecure: true } },
      ]),
    ).toEqual([
      expect.stringMatching(/^federations\[3\]\.metadata\.insecure: unknown field/),
      'federations[1].name: duplicate federation "b" (also federations[0])',
      'federations[1].trustDomain: "b local" is not a trust domain',
      'federations[1].metadataEndpoint: "ftp://b.example.com/" must be an https (or http) URL',
      'federations[2].name: must not be empty',
      'federations[2].trustDomain: must not be empty',
      'federations[2].metadataEndpoint: "https://b.example.com/metadata/?x=1" must have no query or fragment',
    ]);
  });
});

describe('mesh file multiclusters', () => {
  const parseMc = (multiclusters: unknown): ReturnType<typeof parseMeshText> =>
    parseMeshText(JSON.stringify({ multiclusters }), 'mesh.json');
  it("become peer specs with IstioMulticluster's fields, enableIngressGateway true unless set false", () => {
    const mesh = meshToSource(
      parseMc([
        { name: 'flat', metadataEndpoint: 'https://istio-metadata.c.example.com/metadata/', enableIngressGateway: false },
        { name: 'b', metadataEndpoint: 'https://istio-metadata.b.example.com/metadata/', metadata: { ca: 'PEM' } },
      ]),
      'file:mesh.json',
    );
    expect(mesh.multiclusters).toEqual([
      {
        name: 'b',
        metadataEndpoint: 'https://istio-metadata.b.example.com/metadata/',
        metadata: { ca: 'PEM', insecureSkipVerify: undefined },
        enableIngressGateway: true,
      },
      {
        name: 'flat',
        metadataEndpoint: 'https://istio-metadata.c.example.com/metadata/',
        metadata: { ca: undefined, insecureSkipVerify: undefined },
        enableIngressGateway: false,
      },
    ]);
  });

  it('report every bad entry with its path', () => {
    let got: string[] = [];
    try {
      parseMc([
        { name: 'b', metadataEndpoint: 'https://b.example.com/metadata/' },
        { name: 'b', metadataEndpoint: 'https://b.example.com/metadata/#x' },
        { name: 'c', metadataEndpoint: 'https://c.example.com/', trustDomain: 'c.local' },
      ]);
    } catch (err) {
      if (!(err instanceof MeshFileError)) throw err;
      got = err.problems.map((p) => `${p.path}: ${p.message}`);
    }
    expect(got).toEqual([
      expect.stringMatching(/^multiclusters\[2\]\.trustDomain: unknown field/),
      'multiclusters[1].name: duplicate multicluster "b" (also multiclusters[0])',
      'multiclusters[1].metadataEndpoint: "https://b.example.com/metadata/#x" must have no query or fragment',
    ]);
  });
});
