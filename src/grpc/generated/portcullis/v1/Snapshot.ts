// Original file: proto/portcullis/v1/sync.proto

import type { SetMembers as _portcullis_v1_SetMembers, SetMembers__Output as _portcullis_v1_SetMembers__Output } from '../../portcullis/v1/SetMembers.js';
import type { Long } from '@grpc/proto-loader';

export interface Snapshot {
  'seq'?: (number | string | Long);
  'version'?: (string);
  'mode'?: (string);
  'sets'?: (_portcullis_v1_SetMembers)[];
  'acceptsFlowReports'?: (boolean);
  'policyStamp'?: (number | string | Long);
  'clusterStampMs'?: (number | string | Long);
}

export interface Snapshot__Output {
  'seq': (number);
  'version': (string);
  'mode': (string);
  'sets': (_portcullis_v1_SetMembers__Output)[];
  'acceptsFlowReports': (boolean);
  'policyStamp': (number);
  'clusterStampMs': (number);
}
