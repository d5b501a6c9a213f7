// Original file: proto/portcullis/v1/sync.proto


export interface SetMembers {
  'kind'?: (string);
  'members'?: (string)[];
}

export interface SetMembers__Output {
  'kind': (string);
  'members': (string)[];
}
