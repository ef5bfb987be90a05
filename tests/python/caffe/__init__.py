"""Caffe models for kiln's tests, written from Python with protobuf code generated from
kiln's own schema (src/parsers/caffe/caffe.proto); the files live in a cache in the build
tree and are never committed."""
