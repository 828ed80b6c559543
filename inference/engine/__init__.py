"""Streaming inference: feature windows per stream → avatar texture, blendshape weights, pose (CPU and CUDA)."""
