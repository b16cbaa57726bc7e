"""Hooks of nfnet_mm."""
