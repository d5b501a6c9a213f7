// Original file: proto/portcullis/v1/sync.proto

import type { FlowRecord as _portcullis_v1_FlowRecord, FlowRecord__Output as _portcullis_v1_FlowRecord__Output } from '../../portcullis/v1/FlowRecord.js';
import type { FlowLost as _portcullis_v1_FlowLost, FlowLost__Output as _portcullis_v1_FlowLost__Output } from '../../portcullis/v1/FlowLost.js';

export interface FlowReport {
  'records'?: (_portcullis_v1_FlowRecord)[];
  'lost'?: (_portcullis_v1_FlowLost)[];
  'more'?: (boolean);
}

export interface FlowReport__Output {
  'records': (_portcullis_v1_FlowRecord__Output)[];
  'lost': (_portcullis_v1_FlowLost__Output)[];
  'more': (boolean);
}
