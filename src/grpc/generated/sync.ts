import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { Ack as _portcullis_v1_Ack, Ack__Output as _portcullis_v1_Ack__Output } from './portcullis/v1/Ack.js';
import type { AgentMessage as _portcullis_v1_AgentMessage, AgentMessage__Output as _portcullis_v1_AgentMessage__Output } from './portcullis/v1/AgentMessage.js';
import type { ApplyError as _portcullis_v1_ApplyError, ApplyError__Output as _portcullis_v1_ApplyError__Output } from './portcullis/v1/ApplyError.js';
import type { ControllerMessage as _portcullis_v1_ControllerMessage, ControllerMessage__Output as _portcullis_v1_ControllerMessage__Output } from './portcullis/v1/ControllerMessage.js';
import type { Delta as _portcullis_v1_Delta, Delta__Output as _portcullis_v1_Delta__Output } from './portcullis/v1/Delta.js';
import type { EgressStatus as _portcullis_v1_EgressStatus, EgressStatus__Output as _portcullis_v1_EgressStatus__Output } from './portcullis/v1/EgressStatus.js';
import type { FlowLost as _portcullis_v1_FlowLost, FlowLost__Output as _portcullis_v1_FlowLost__Output } from './portcullis/v1/FlowLost.js';
import type { FlowRecord as _portcullis_v1_FlowRecord, FlowRecord__Output as _portcullis_v1_FlowRecord__Output } from './portcullis/v1/FlowRecord.js';
import type { FlowReport as _portcullis_v1_FlowReport, FlowReport__Output as _portcullis_v1_FlowReport__Output } from './portcullis/v1/FlowReport.js';
import type { FlowStatus as _portcullis_v1_FlowStatus, FlowStatus__Output as _portcullis_v1_FlowStatus__Output } from './portcullis/v1/FlowStatus.js';
import type { Hello as _portcullis_v1_Hello, Hello__Output as _portcullis_v1_Hello__Output } from './portcullis/v1/Hello.js';
import type { PeerFlowQuery as _portcullis_v1_PeerFlowQuery, PeerFlowQuery__Output as _portcullis_v1_PeerFlowQuery__Output } from './portcullis/v1/PeerFlowQuery.js';
import type { PeerFlows as _portcullis_v1_PeerFlows, PeerFlows__Output as _portcullis_v1_PeerFlows__Output } from './portcullis/v1/PeerFlows.js';
import type { PeersClient as _portcullis_v1_PeersClient, PeersDefinition as _portcullis_v1_PeersDefinition } from './portcullis/v1/Peers.js';
import type { Ping as _portcullis_v1_Ping, Ping__Output as _portcullis_v1_Ping__Output } from './portcullis/v1/Ping.js';
import type { Pong as _portcullis_v1_Pong, Pong__Output as _portcullis_v1_Pong__Output } from './portcullis/v1/Pong.js';
import type { Rejected as _portcullis_v1_Rejected, Rejected__Output as _portcullis_v1_Rejected__Output } from './portcullis/v1/Rejected.js';
import type { SetMembers as _portcullis_v1_SetMembers, SetMembers__Output as _portcullis_v1_SetMembers__Output } from './portcullis/v1/SetMembers.js';
import type { Snapshot as _portcullis_v1_Snapshot, Snapshot__Output as _portcullis_v1_Snapshot__Output } from './portcullis/v1/Snapshot.js';
import type { SyncClient as _portcullis_v1_SyncClient, SyncDefinition as _portcullis_v1_SyncDefinition } from './portcullis/v1/Sync.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  portcullis: {
    v1: {
      Ack: MessageTypeDefinition<_portcullis_v1_Ack, _portcullis_v1_Ack__Output>
      AgentMessage: MessageTypeDefinition<_portcullis_v1_AgentMessage, _portcullis_v1_AgentMessage__Output>
      ApplyError: MessageTypeDefinition<_portcullis_v1_ApplyError, _portcullis_v1_ApplyError__Output>
      ControllerMessage: MessageTypeDefinition<_portcullis_v1_ControllerMessage, _portcullis_v1_ControllerMessage__Output>
      Delta: MessageTypeDefinition<_portcullis_v1_Delta, _portcullis_v1_Delta__Output>
      EgressStatus: MessageTypeDefinition<_portcullis_v1_EgressStatus, _portcullis_v1_EgressStatus__Output>
      FlowLost: MessageTypeDefinition<_portcullis_v1_FlowLost, _portcullis_v1_FlowLost__Output>
      FlowRecord: MessageTypeDefinition<_portcullis_v1_FlowRecord, _portcullis_v1_FlowRecord__Output>
      FlowReport: MessageTypeDefinition<_portcullis_v1_FlowReport, _portcullis_v1_FlowReport__Output>
      FlowStatus: MessageTypeDefinition<_portcullis_v1_FlowStatus, _portcullis_v1_FlowStatus__Output>
      Hello: MessageTypeDefinition<_portcullis_v1_Hello, _portcullis_v1_Hello__Output>
      PeerFlowQuery: MessageTypeDefinition<_portcullis_v1_PeerFlowQuery, _portcullis_v1_PeerFlowQuery__Output>
      PeerFlows: MessageTypeDefinition<_portcullis_v1_PeerFlows, _portcullis_v1_PeerFlows__Output>
      Peers: SubtypeConstructor<typeof grpc.Client, _portcullis_v1_PeersClient> & { service: _portcullis_v1_PeersDefinition }
      Ping: MessageTypeDefinition<_portcullis_v1_Ping, _portcullis_v1_Ping__Output>
      Pong: MessageTypeDefinition<_portcullis_v1_Pong, _portcullis_v1_Pong__Output>
      Rejected: MessageTypeDefinition<_portcullis_v1_Rejected, _portcullis_v1_Rejected__Output>
      SetMembers: MessageTypeDefinition<_portcullis_v1_SetMembers, _portcullis_v1_SetMembers__Output>
      Snapshot: MessageTypeDefinition<_portcullis_v1_Snapshot, _portcullis_v1_Snapshot__Output>
      Sync: SubtypeConstructor<typeof grpc.Client, _portcullis_v1_SyncClient> & { service: _portcullis_v1_SyncDefinition }
    }
  }
}

