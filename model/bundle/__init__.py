"""The versioned model bundle `models/<name>/<version>/`. Import from the modules; this file imports nothing.

- `contract`: what a bundle promises its readers, without TensorFlow (reserved names, tower schema, manifest,
  index spec, GPU placement); the server's request path imports it and `reader` only.
- `reserved`: every reserved name (query-tower inputs filled from request fields, files, signature, columns).
- `manifest`, `spec_io`, `index`, `gpu`: the manifest, the tower schema's JSON form, FAISS index specs and
  building, FAISS GPU placement (all TensorFlow-free).
- `export` (writes a bundle atomically) and `reader` (opens, validates and loads one): these need TensorFlow.
"""
