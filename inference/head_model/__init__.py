"""Personalised hybrid head model: whole-head mesh from FaceMesh topology, blendshape basis,
dynamic UV textures and the texture/geometry VAE (DESIGN.md, "The method in one page", step 1)."""
