"""What the image steps share, by concept; the folder names say where to look.

- ``models/``: the catalog of models and prices, the rules fields are checked against,
  which model runs (``auto``), and what a request costs.
- ``sources/``: reference images (asset records, project files, http(s) URLs through the
  safe fetcher) and the plan that turns an edit's references into provider inputs.
- ``pixels/``: all the Pillow work: formats, guarded decoding, checking and re-encoding
  answers, the transform core, outpainting canvases and masks, the preview's drawings.
- ``providers/``: the provider contract, OpenAI, Gemini and the offline preview, the one
  failure table, redaction, and the retry loop with its per-provider call limit.

At the top: :class:`~steps.imaging.step.ImageStep` (the run skeleton of the billable
steps), the output options (``options``), making and storing the images (``production``,
``running``, ``assets``, ``partial``), whose key pays (``keys``) and the image steps' own
settings (``settings``).

Importing this package imports neither Pillow nor a provider SDK; those load lazily where
they are used, so ``fetchflow validate`` stays fast.
"""
