"""A workbench for safe reinforcement learning from pixels with world models."""
