"""Benchmarks of hf_vit_adapter: speed, memory and parameters against full fine-tuning and LoRA (`speed.py`),
and accuracy against the seed's published table (`reproduce_seed.py`).

This room imports the method; the method never imports it.
"""
