"""What the tests share."""
import os.path as osp

#: The repository root.
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
