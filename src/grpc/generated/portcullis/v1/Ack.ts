// Original file: proto/portcullis/v1/sync.proto

import type { Long } from '@grpc/proto-loader';

export interface Ack {
  'version'?: (string);
  'seq'?: (number | string | Long);
}

export interface Ack__Output {
  'version': (string);
  'seq': (number);
}
