"""Whole-network ONNX models for kiln's tests, generated from code (gen_models.py); the
files live in a cache in the build tree and are never committed."""
