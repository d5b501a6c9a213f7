// Original file: proto/portcullis/v1/sync.proto

import type { Snapshot as _portcullis_v1_Snapshot, Snapshot__Output as _portcullis_v1_Snapshot__Output } from '../../portcullis/v1/Snapshot.js';
import type { Delta as _portcullis_v1_Delta, Delta__Output as _portcullis_v1_Delta__Output } from '../../portcullis/v1/Delta.js';
import type { Ping as _portcullis_v1_Ping, Ping__Output as _portcullis_v1_Ping__Output } from '../../portcullis/v1/Ping.js';
import type { Rejected as _portcullis_v1_Rejected, Rejected__Output as _portcullis_v1_Rejected__Output } from '../../portcullis/v1/Rejected.js';

export interface ControllerMessage {
  'snapshot'?: (_portcullis_v1_Snapshot | null);
  'delta'?: (_portcullis_v1_Delta | null);
  'ping'?: (_portcullis_v1_Ping | null);
  'rejected'?: (_portcullis_v1_Rejected | null);
  'msg'?: "snapshot"|"delta"|"ping"|"rejected";
}

export interface ControllerMessage__Output {
  'snapshot'?: (_portcullis_v1_Snapshot__Output | null);
  'delta'?: (_portcullis_v1_Delta__Output | null);
  'ping'?: (_portcullis_v1_Ping__Output | null);
  'rejected'?: (_portcullis_v1_Rejected__Output | null);
  'msg'?: "snapshot"|"delta"|"ping"|"rejected";
}
