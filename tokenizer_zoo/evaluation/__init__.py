"""Evaluating tokenizers on datasets.

* :mod:`~tokenizer_zoo.evaluation.streaming`: what ``recipes/evaluate.py`` and compare share: readable-image
  batches split across processes, and the per-model metrics they stream (:class:`ModelMetrics`).
* :mod:`~tokenizer_zoo.evaluation.models`: MODEL arguments (zoo pipelines or published releases) and a timed
  reconstruction that counts decoder evaluations.
* :mod:`~tokenizer_zoo.evaluation.compare`: many tokenizers, one dataset -> one row a model.
* :mod:`~tokenizer_zoo.evaluation.report`: compare.md / compare.json, rate_distortion.png, grid.png.
* :mod:`~tokenizer_zoo.evaluation.command`: ``tokenizer-zoo compare``.

Nothing is imported here, so the command line starts without loading these modules.
"""
