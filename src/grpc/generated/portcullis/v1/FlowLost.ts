// Original file: proto/portcullis/v1/sync.proto

import type { Long } from '@grpc/proto-loader';

export interface FlowLost {
  'direction'?: (string);
  'verdict'?: (string);
  'family'?: (number);
  'packets'?: (number | string | Long);
}

export interface FlowLost__Output {
  'direction': (string);
  'verdict': (string);
  'family': (number);
  'packets': (number);
}
