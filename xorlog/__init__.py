"""What ``python -m app`` and ``python -m training`` share about their log output.

``app/`` and ``training/`` never import each other; like ``modelrepo/``, this top-level package
is the one place both import for what they must do alike:

- :mod:`xorlog.formats`: the ``auto``/``json``/``text`` choice and the two line formats.
- :mod:`xorlog.tfstartup`, with :mod:`xorlog.stderr_filter`: TensorFlow's C++ start-up
  notices, silenced before it is imported.

It depends on the standard library and orjson only: no TensorFlow, nothing from either side.
"""
