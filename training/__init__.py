"""Training pipeline for the XOR classifier: data -> model -> train -> evaluate -> export.

The stages are small modules (``data``, ``model``, ``train``, ``evaluate``, ``export``) with a
thin command line on top (``python -m training`` / ``xor-train``). Importing this package does
not import TensorFlow; the stages that need it do.
"""
