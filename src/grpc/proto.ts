/**
 * Loads the wire contract (proto/portcullis/v1/sync.proto) at run time with @grpc/proto-loader
 * and exposes it typed with the generated types in ./generated (regenerate with
 * scripts/gen-proto-types.sh; its options must match PROTO_LOADER_OPTIONS below).
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { packageRoot } from '../package-root.js';
import type { ProtoGrpcType } from './generated/sync.js';
import type { SyncClient as GeneratedSyncClient, SyncDefinition } from './generated/portcullis/v1/Sync.js';

export type { AgentMessage, AgentMessage__Output } from './generated/portcullis/v1/AgentMessage.js';
export type { ControllerMessage, ControllerMessage__Output } from './generated/portcullis/v1/ControllerMessage.js';
export type { Snapshot, Snapshot__Output } from './generated/portcullis/v1/Snapshot.js';
export type { Delta, Delta__Output } from './generated/portcullis/v1/Delta.js';
export type { SetMembers, SetMembers__Output } from './generated/portcullis/v1/SetMembers.js';
export type { SyncHandlers } from './generated/portcullis/v1/Sync.js';
export type SyncStubClient = GeneratedSyncClient;

/** Must match the flags of scripts/gen-proto-types.sh. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export function syncProtoPath(): string {
  return path.join(packageRoot(), 'proto', 'portcullis', 'v1', 'sync.proto');
}

export interface SyncProto {
  readonly service: SyncDefinition;
  /** Client stub constructor: `new Client(target, credentials, options)`. */
  readonly Client: new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ChannelOptions,
  ) => GeneratedSyncClient;
}

let parsed: ProtoGrpcType | undefined;

/**
 * The wire contract's services, parsed once per process: sync.proto is a file of the package,
 * fixed while the process runs, and a parse costs about 9 ms of CPU. (Parsing it for every stub
 * made each agent's first connection, and each failover to another replica, pay that: 45 s of
 * CPU at least for the 5,000 simulated agents of the replicas benchmark.) grpc-js keeps no
 * per-channel state in the definition, so sharing it between clients and servers is safe.
 */
export function loadedSyncPackage(): ProtoGrpcType {
  parsed ??= grpc.loadPackageDefinition(protoLoader.loadSync(syncProtoPath(), PROTO_LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  return parsed;
}

/** The Sync service and its client stub constructor. */
export function loadSyncProto(): SyncProto {
  const Sync = loadedSyncPackage().portcullis.v1.Sync;
  return { service: Sync.service, Client: Sync };
}
