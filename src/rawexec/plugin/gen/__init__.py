"""Generated protobuf/gRPC modules (scripts/gen-proto). Do not edit."""
