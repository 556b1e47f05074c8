"""Weights and the Hub: the safetensors format (weights), the run record (rundir), model cards (cards),
save/load/push (pretrained) and create_model with weights (factory). Above zoo.models."""
