"""Everything the image steps do with Pillow: formats told by their bytes, decoding with a
decompression-bomb guard, checking and re-encoding provider answers, the image_transform
core, outpainting canvases and masks, and the offline preview's drawings.

Pillow is imported inside the functions: importing these modules stays cheap.
"""
