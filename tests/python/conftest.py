"""pytest set-up for the Python package tests.

Tests marked ``cuda`` need a CUDA GPU, PyTorch with CUDA and a pagedkv that sees the device; on
any other machine they are reported as skipped (never as errors), so CI without a GPU passes.
Run only them on the GPU machine with ``python3 -m pytest tests/python -m cuda``.
"""

from __future__ import annotations

import functools

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cuda: needs a CUDA GPU, PyTorch with CUDA and pagedkv built with CUDA (skipped otherwise)",
    )


@functools.lru_cache(maxsize=None)
def cuda_skip_reason():
    """None when the CUDA tests can run, else why not."""
    try:
        import pagedkv
    except ImportError as error:
        return f"pagedkv does not import: {error}"
    if not pagedkv.cuda_available():
        return "no usable CUDA device (pagedkv.cuda_available() is False)"
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "PyTorch has no CUDA device"
    return None


def pytest_collection_modifyitems(config, items):
    cuda_items = [item for item in items if "cuda" in item.keywords]
    if not cuda_items:
        return
    reason = cuda_skip_reason()
    if reason is not None:
        for item in cuda_items:
            item.add_marker(pytest.mark.skip(reason=reason))
