from .checkpoint import *  # noqa: F401,F403
from .onnx_export import *  # noqa: F401,F403
