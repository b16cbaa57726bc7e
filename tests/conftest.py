"""Shared test set-up.

- Makes the helpers shared by all test folders (``tests/shared_archs.py``)
  importable.
- Marks as ``slow`` the tests listed in :data:`SLOW` (in files that do not
  mark themselves: a subprocess, DDP, a Runner that trains, a full-size
  model), and skips ``cuda``-marked tests when no CUDA device is present.
"""
import os.path as osp
import sys

import pytest

_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# node ids (without parameters) of the slow tests of files that do not mark
# them with @pytest.mark.slow themselves
SLOW = frozenset({
    'test_downstream/test_downstream_mmdet.py::'
    'test_detector_nfnet_loss_backward_predict',
    'test_downstream/test_downstream_mmseg.py::'
    'test_upernet_nfnet_loss_backward_predict',
    'test_downstream/test_downstream_mmseg.py::'
    'test_upernet_nfnet_frozen_stages',
    'test_engine/test_agc.py::test_ddp_two_ranks_gloo',
    'test_engine/test_agc.py::test_runner_logs_agc_scalars',
    'test_engine/test_sam.py::test_ddp_two_processes_gloo',
    'test_engine/test_sam.py::test_runner_trains_with_sam',
    'test_foundation/test_checkpoint_safety.py::test_resume_is_bitwise_exact',
    'test_foundation/test_checkpoint_safety.py::'
    'test_real_checkpoint_needs_only_allow_listed_globals',
    'test_foundation/test_checkpoint_safety.py::'
    'test_killed_save_leaves_previous_checkpoint_and_pointer_intact',
    'test_foundation/test_custom_imports.py::'
    'test_mmpretrain_config_with_custom_imports_trains',
    'test_foundation/test_train_tool.py::test_train_cli_runs_and_resumes',
    'test_models/test_nfnet_backbone.py::test_classifier_forward_backward_f0',
    'test_models/test_nfnet_backbone.py::test_param_counts_equal_timm',
    'test_models/test_nfnet_backbone.py::test_f4plus_and_f7_param_counts',
    'test_models/test_nfnet_deploy.py::test_switch_to_deploy_f0',
    'test_models/test_nfnet_timm_parity.py::test_parity_with_timm',
    'test_recipe/test_configs.py::test_config_trains_two_iterations',
    'test_recipe/test_hub.py::'
    'test_f0_name_builds_the_paper_model_and_loads_local_weights',
})


def pytest_collection_modifyitems(config, items):
    import torch
    no_cuda = pytest.mark.skip(reason='needs CUDA (torch.cuda.is_available() '
                               'is False)')
    has_cuda = torch.cuda.is_available()
    for item in items:
        path = osp.relpath(str(item.path), _HERE).replace(osp.sep, '/')
        if f'{path}::{getattr(item, "originalname", item.name)}' in SLOW:
            item.add_marker(pytest.mark.slow)
        if not has_cuda and item.get_closest_marker('cuda') is not None:
            item.add_marker(no_cuda)
