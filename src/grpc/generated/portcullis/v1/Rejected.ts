// Original file: proto/portcullis/v1/sync.proto


export interface Rejected {
  'reason'?: (string);
}

export interface Rejected__Output {
  'reason': (string);
}
