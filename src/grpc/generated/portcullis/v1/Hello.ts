// Original file: proto/portcullis/v1/sync.proto


export interface Hello {
  'hostId'?: (string);
  'addresses'?: (string)[];
  'agentVersion'?: (string);
  'appliedVersion'?: (string);
}

export interface Hello__Output {
  'hostId': (string);
  'addresses': (string)[];
  'agentVersion': (string);
  'appliedVersion': (string);
}
