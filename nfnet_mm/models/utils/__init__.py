from .ema import *  # noqa: F401,F403
from .strict_pretrained import *  # noqa: F401,F403
