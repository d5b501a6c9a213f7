// Original file: proto/portcullis/v1/sync.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { PeerFlowQuery as _portcullis_v1_PeerFlowQuery, PeerFlowQuery__Output as _portcullis_v1_PeerFlowQuery__Output } from '../../portcullis/v1/PeerFlowQuery.js';
import type { PeerFlows as _portcullis_v1_PeerFlows, PeerFlows__Output as _portcullis_v1_PeerFlows__Output } from '../../portcullis/v1/PeerFlows.js';

export interface PeersClient extends grpc.Client {
  QueryFlows(argument: _portcullis_v1_PeerFlowQuery, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_portcullis_v1_PeerFlows__Output>;
  QueryFlows(argument: _portcullis_v1_PeerFlowQuery, options?: grpc.CallOptions): grpc.ClientReadableStream<_portcullis_v1_PeerFlows__Output>;
  queryFlows(argument: _portcullis_v1_PeerFlowQuery, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_portcullis_v1_PeerFlows__Output>;
  queryFlows(argument: _portcullis_v1_PeerFlowQuery, options?: grpc.CallOptions): grpc.ClientReadableStream<_portcullis_v1_PeerFlows__Output>;
  
}

export interface PeersHandlers extends grpc.UntypedServiceImplementation {
  QueryFlows: grpc.handleServerStreamingCall<_portcullis_v1_PeerFlowQuery__Output, _portcullis_v1_PeerFlows>;
  
}

export interface PeersDefinition extends grpc.ServiceDefinition {
  QueryFlows: MethodDefinition<_portcullis_v1_PeerFlowQuery, _portcullis_v1_PeerFlows, _portcullis_v1_PeerFlowQuery__Output, _portcullis_v1_PeerFlows__Output>
}
