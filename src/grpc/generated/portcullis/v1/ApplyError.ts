// Original file: proto/portcullis/v1/sync.proto

import type { Long } from '@grpc/proto-loader';

export interface ApplyError {
  'version'?: (string);
  'seq'?: (number | string | Long);
  'message'?: (string);
}

export interface ApplyError__Output {
  'version': (string);
  'seq': (number);
  'message': (string);
}
