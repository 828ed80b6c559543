"""What every room of Headcast stands on: the error root, atomic files, hashing, percentiles.

Nothing here imports another Headcast package; every other package may import this one.
"""
