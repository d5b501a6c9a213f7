// Original file: proto/portcullis/v1/sync.proto

import type { EgressStatus as _portcullis_v1_EgressStatus, EgressStatus__Output as _portcullis_v1_EgressStatus__Output } from '../../portcullis/v1/EgressStatus.js';
import type { FlowStatus as _portcullis_v1_FlowStatus, FlowStatus__Output as _portcullis_v1_FlowStatus__Output } from '../../portcullis/v1/FlowStatus.js';
import type { Long } from '@grpc/proto-loader';

export interface Hello {
  'hostId'?: (string);
  'addresses'?: (string)[];
  'agentVersion'?: (string);
  'appliedVersion'?: (string);
  'egress'?: (_portcullis_v1_EgressStatus | null);
  'flows'?: (_portcullis_v1_FlowStatus | null);
  'groupModes'?: (boolean);
  'appliedPolicyStamp'?: (number | string | Long);
  'appliedClusterStampMs'?: (number | string | Long);
}

export interface Hello__Output {
  'hostId': (string);
  'addresses': (string)[];
  'agentVersion': (string);
  'appliedVersion': (string);
  'egress': (_portcullis_v1_EgressStatus__Output | null);
  'flows': (_portcullis_v1_FlowStatus__Output | null);
  'groupModes': (boolean);
  'appliedPolicyStamp': (number);
  'appliedClusterStampMs': (number);
}
