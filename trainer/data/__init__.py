"""The data step: reading, validating, splitting, statistics and the training input.

`prepare.prepare_data` is the entry: every dataset goes through the one Beam
data step (`beam_ingest` and the `beam_*` modules it runs; a built-in dataset
from a temporary Parquet copy), with the rules in `ingest` (bad-data cases,
column kinds, labels, names), `split` and `schema`; `dataset` feeds the
written shards to training. docs/design.md §2 has the contract.
"""
