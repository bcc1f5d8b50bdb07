"""The training room: turns CLI arguments into a dataset, a backbone with an adapter, and a `Trainer` run.

It imports the method (`hf_vit_adapter`), never the reverse. `hf_vit_adapter.train` is the entry point.
"""
