// Original file: proto/portcullis/v1/sync.proto

import type { Long } from '@grpc/proto-loader';

export interface Ping {
  'nonce'?: (number | string | Long);
}

export interface Ping__Output {
  'nonce': (number);
}
