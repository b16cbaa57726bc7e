"""The memory planner: saved-activation counts against a hand count, the
state it adds, and its table for a tiny arch."""
import json

import pytest
import torch
import torch.nn as nn

from lab import plan_memory
from lab.benchmarks.memory import (GIB, RESERVED_BYTES, activation_bytes,
                                   largest_batch, saved_bytes, state_bytes)


def test_saved_bytes_match_a_hand_count():
    """conv -> ReLU -> conv in fp32: the first conv saves its input (the
    weights are state, not counted), ReLU its output, which the second conv
    saves too (one storage), and nothing else."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1))
    px = 12
    per_image = 4 * px * px * (3 + 8)  # float32 input + ReLU output
    for batch in (1, 3):
        total, _ = saved_bytes(model, batch, px, dtype=None)
        assert total == batch * per_image
    act = activation_bytes(model, px, dtype=None, blocks=[model[1]])
    assert act == dict(
        per_image=per_image, fixed=0, largest_block=4 * px * px * 8)


def test_autocast_copies_are_fixed_not_per_image():
    """Under bf16 autocast a conv saves a bf16 copy of its weight (fixed)
    and a bf16 copy of its fp32 input (per image)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False))
    act = activation_bytes(model, 10, dtype=torch.bfloat16)
    assert act['per_image'] == 2 * 3 * 10 * 10
    assert act['fixed'] == 2 * 8 * 3 * 3 * 3


def test_state_and_largest_batch():
    state = state_bytes(1000, sam=True, ddp_buckets=False)
    assert state == dict(
        weights=4000,
        gradients=4000,
        ddp_buckets=0,
        momentum=4000,
        ema=4000,
        sam_copy=4000)
    gpu = 10 * GIB
    usable = (gpu - RESERVED_BYTES) * 0.9
    batch = largest_batch(gpu, 20000, 1000, GIB // 4)
    assert batch * GIB // 4 <= usable - 21000 < (batch + 1) * GIB // 4


@pytest.mark.slow
def test_tiny_arch_table(tmp_path, capsys):
    out = tmp_path / 'memory.json'
    rows = plan_memory.main(['--quick', '--out', str(out)])
    row, = rows
    assert json.loads(out.read_text())['rows'][0]['config'] == row['config']
    assert row['train_px'] == 32 and row['batch_per_gpu'] == 128
    # checkpointing stores less per image, even with one block recomputed
    assert 0 < row['act_per_image_cp_gib'] < row['act_per_image_gib']
    assert row['fits']
    assert (row['largest_batch']['with_cp'] >
            row['largest_batch']['without_cp'] > 128)
    # weights, gradients (the DDP buckets are views), momentum and EMA: 4
    # fp32 copies
    assert row['state_gib']['ddp_buckets'] == 0
    assert sum(row['state_gib'].values()) == pytest.approx(4 * 4 *
                                                           row['params'] / GIB)
    assert '| nfnet-f0_8xb128_in1k.py | 32 | 128 |' in capsys.readouterr().out


@pytest.mark.cuda
def test_measured_peak_is_next_to_the_estimate(tmp_path):
    row, = plan_memory.main(['--quick', '--peak-batch', '8'])
    assert row['peak_batch'] == 8
    # the estimate leaves out the CUDA workspace and the logits: same order
    assert (0.5 * row['measured_peak_gib'] < row['estimated_peak_gib'] <
            2 * row['measured_peak_gib'])


def test_peak_batch_without_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='no CUDA device'):
        plan_memory.main(['--quick', '--peak-batch', '8'])
