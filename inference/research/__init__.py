"""Research code: experiments about the product's networks, never on the product's path.

The top of ``inference``: it may import any room of inference (the animation network, the
engine's folded inference), and nothing imports it but tests and people at a shell.

    python -m inference.research.ablate_animation [--npz DATA.npz] ...   # animation-network ablations
    inference.research.synthetic.SyntheticWorld                        # synthetic drivers + target
"""
