// Original file: proto/portcullis/v1/sync.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AgentMessage as _portcullis_v1_AgentMessage, AgentMessage__Output as _portcullis_v1_AgentMessage__Output } from '../../portcullis/v1/AgentMessage.js';
import type { ControllerMessage as _portcullis_v1_ControllerMessage, ControllerMessage__Output as _portcullis_v1_ControllerMessage__Output } from '../../portcullis/v1/ControllerMessage.js';

export interface SyncClient extends grpc.Client {
  Sync(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_portcullis_v1_AgentMessage, _portcullis_v1_ControllerMessage__Output>;
  Sync(options?: grpc.CallOptions): grpc.ClientDuplexStream<_portcullis_v1_AgentMessage, _portcullis_v1_ControllerMessage__Output>;
  sync(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_portcullis_v1_AgentMessage, _portcullis_v1_ControllerMessage__Output>;
  sync(options?: grpc.CallOptions): grpc.ClientDuplexStream<_portcullis_v1_AgentMessage, _portcullis_v1_ControllerMessage__Output>;
  
}

export interface SyncHandlers extends grpc.UntypedServiceImplementation {
  Sync: grpc.handleBidiStreamingCall<_portcullis_v1_AgentMessage__Output, _portcullis_v1_ControllerMessage>;
  
}

export interface SyncDefinition extends grpc.ServiceDefinition {
  Sync: MethodDefinition<_portcullis_v1_AgentMessage, _portcullis_v1_ControllerMessage, _portcullis_v1_AgentMessage__Output, _portcullis_v1_ControllerMessage__Output>
}
