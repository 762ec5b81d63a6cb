"""Shared by the image steps: model catalog and rules, providers, Pillow post-processing.

Importing this package imports neither Pillow nor a provider SDK; those load lazily where
they are used, so ``fetchflow validate`` stays fast.
"""
