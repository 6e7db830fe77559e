"""newsletter: a self-hosted, personalised research-paper digest.

The pipeline is ingest -> store -> rank -> render -> deliver; `pipeline` wires
the stages together and `cli` is a thin layer over it.
"""

__version__ = "0.1.0"
