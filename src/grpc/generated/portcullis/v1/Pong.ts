// Original file: proto/portcullis/v1/sync.proto

import type { Long } from '@grpc/proto-loader';

export interface Pong {
  'nonce'?: (number | string | Long);
}

export interface Pong__Output {
  'nonce': (number);
}
