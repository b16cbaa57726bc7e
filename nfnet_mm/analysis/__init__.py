"""Experiments that reproduce the paper's claims (not imported by ``nfnet_mm``)."""
