"""Presets of published tokenizer releases (one file per family), registered in :data:`tokenizer_zoo.presets.PRESETS`
through the entry-point group ``tokenizer_zoo.presets``. Their weights come from the release files through
:mod:`tokenizer_zoo.convert`."""
