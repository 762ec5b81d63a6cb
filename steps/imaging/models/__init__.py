"""What the image models are and can do: the catalog of models and their published prices,
the rules a step's fields are checked against, and which model a step runs (``auto`` chosen
by the keys configured). Pure: no Pillow, no SDK, no network.
"""
