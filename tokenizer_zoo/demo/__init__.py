"""The Gradio comparison page (optional extra ``[demo]``): :mod:`~tokenizer_zoo.demo.app` builds and serves it,
:mod:`~tokenizer_zoo.demo.scoring` computes what it shows, :mod:`~tokenizer_zoo.demo.command` is
``tokenizer-zoo demo``. Nothing is imported here: gradio loads only when the page is built."""
