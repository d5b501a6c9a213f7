#!/bin/sh
# Regenerates the TypeScript types of proto/portcullis/v1/*.proto into src/grpc/generated/.
# The options must match PROTO_LOADER_OPTIONS in src/grpc/proto.ts.
set -eu
cd "$(dirname "$0")/.."
rm -rf src/grpc/generated
exec npx proto-loader-gen-types \
  --longs=Number --enums=String --defaults --oneofs \
  --grpcLib=@grpc/grpc-js --importFileExtension=.js \
  --outDir=src/grpc/generated \
  proto/portcullis/v1/sync.proto
