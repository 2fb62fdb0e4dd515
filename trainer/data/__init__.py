"""The data step: reading, validating, splitting, statistics and the training input.

`prepare.prepare_data` is the entry: files go through the Beam pipeline
(`beam_ingest` and the `beam_*` modules it runs), the built-in datasets
through the in-memory path (`ingest`, `split`, `schema`); `dataset` feeds the
written shards to training. docs/design.md §2 has the contract.
"""
