// Original file: proto/portcullis/v1/sync.proto

import type { Long } from '@grpc/proto-loader';

export interface FlowRecord {
  'direction'?: (string);
  'verdict'?: (string);
  'source'?: (string);
  'destination'?: (string);
  'protocol'?: (string);
  'port'?: (number);
  'packets'?: (number | string | Long);
  'bytes'?: (number | string | Long);
  'firstSeenMs'?: (number | string | Long);
  'lastSeenMs'?: (number | string | Long);
}

export interface FlowRecord__Output {
  'direction': (string);
  'verdict': (string);
  'source': (string);
  'destination': (string);
  'protocol': (string);
  'port': (number);
  'packets': (number);
  'bytes': (number);
  'firstSeenMs': (number);
  'lastSeenMs': (number);
}
