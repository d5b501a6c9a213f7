// Original file: proto/portcullis/v1/sync.proto


export interface PeerFlows {
  'answerJson'?: (string);
}

export interface PeerFlows__Output {
  'answerJson': (string);
}
