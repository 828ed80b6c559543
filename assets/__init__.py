"""Shipped non-code assets: the GLSL shaders in `shaders/`.

A package only so that `importlib.resources` finds the files in an installed copy as in a checkout.
Never sample media of real people here (the clips are fetched at first use, FACTS.md).
"""
