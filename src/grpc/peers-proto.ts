/**
 * The Peers service of the wire contract (proto/portcullis/v1/sync.proto, controller to
 * controller), loaded like Sync (proto.ts, the same options) and typed with the generated types.
 */
import * as grpc from '@grpc/grpc-js';
import type { PeersClient, PeersDefinition } from './generated/portcullis/v1/Peers.js';
import { loadedSyncPackage } from './proto.js';

export type { PeersClient, PeersHandlers } from './generated/portcullis/v1/Peers.js';
export type { PeerFlowQuery, PeerFlowQuery__Output } from './generated/portcullis/v1/PeerFlowQuery.js';
export type { PeerFlows, PeerFlows__Output } from './generated/portcullis/v1/PeerFlows.js';

export interface PeersProto {
  readonly service: PeersDefinition;
  readonly Client: new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => PeersClient;
}

/** The Peers service and its client stub constructor (the same parse as Sync's). */
export function loadPeersProto(): PeersProto {
  const Peers = loadedSyncPackage().portcullis.v1.Peers;
  return { service: Peers.service, Client: Peers };
}
