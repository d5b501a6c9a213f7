// Original file: proto/portcullis/v1/sync.proto

import type { Long } from '@grpc/proto-loader';

export interface PeerFlowQuery {
  'from'?: (string);
  'to'?: (string);
  'port'?: (string);
  'verdicts'?: (string)[];
  'direction'?: (string);
  'sinceMs'?: (number | string | Long);
  'untilMs'?: (number | string | Long);
  'limit'?: (number);
  'keys'?: (string)[];
}

export interface PeerFlowQuery__Output {
  'from': (string);
  'to': (string);
  'port': (string);
  'verdicts': (string)[];
  'direction': (string);
  'sinceMs': (number);
  'untilMs': (number);
  'limit': (number);
  'keys': (string)[];
}
