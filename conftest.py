"""Skips ``cuda``-marked tests (tests/ and lab/tests/) without CUDA."""
import pytest


def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available():
        return
    no_cuda = pytest.mark.skip(
        reason='needs CUDA (torch.cuda.is_available() is False)')
    for item in items:
        if item.get_closest_marker('cuda') is not None:
            item.add_marker(no_cuda)
