// Original file: proto/portcullis/v1/sync.proto

import type { Hello as _portcullis_v1_Hello, Hello__Output as _portcullis_v1_Hello__Output } from '../../portcullis/v1/Hello.js';
import type { Ack as _portcullis_v1_Ack, Ack__Output as _portcullis_v1_Ack__Output } from '../../portcullis/v1/Ack.js';
import type { ApplyError as _portcullis_v1_ApplyError, ApplyError__Output as _portcullis_v1_ApplyError__Output } from '../../portcullis/v1/ApplyError.js';
import type { Pong as _portcullis_v1_Pong, Pong__Output as _portcullis_v1_Pong__Output } from '../../portcullis/v1/Pong.js';
import type { FlowReport as _portcullis_v1_FlowReport, FlowReport__Output as _portcullis_v1_FlowReport__Output } from '../../portcullis/v1/FlowReport.js';

export interface AgentMessage {
  'hello'?: (_portcullis_v1_Hello | null);
  'ack'?: (_portcullis_v1_Ack | null);
  'applyError'?: (_portcullis_v1_ApplyError | null);
  'pong'?: (_portcullis_v1_Pong | null);
  'flowReport'?: (_portcullis_v1_FlowReport | null);
  'msg'?: "hello"|"ack"|"applyError"|"pong"|"flowReport";
}

export interface AgentMessage__Output {
  'hello'?: (_portcullis_v1_Hello__Output | null);
  'ack'?: (_portcullis_v1_Ack__Output | null);
  'applyError'?: (_portcullis_v1_ApplyError__Output | null);
  'pong'?: (_portcullis_v1_Pong__Output | null);
  'flowReport'?: (_portcullis_v1_FlowReport__Output | null);
  'msg'?: "hello"|"ack"|"applyError"|"pong"|"flowReport";
}
