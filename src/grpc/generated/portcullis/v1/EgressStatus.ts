// Original file: proto/portcullis/v1/sync.proto


export interface EgressStatus {
  'supported'?: (boolean);
  'enforcing'?: (boolean);
  'reason'?: (string);
  'mappedTasks'?: (number);
  'unmappedTasks'?: (number);
}

export interface EgressStatus__Output {
  'supported': (boolean);
  'enforcing': (boolean);
  'reason': (string);
  'mappedTasks': (number);
  'unmappedTasks': (number);
}
