// Original file: proto/portcullis/v1/sync.proto


export interface FlowStatus {
  'recording'?: (boolean);
  'reason'?: (string);
  'intervalSeconds'?: (number);
  'maxEntries'?: (number);
}

export interface FlowStatus__Output {
  'recording': (boolean);
  'reason': (string);
  'intervalSeconds': (number);
  'maxEntries': (number);
}
