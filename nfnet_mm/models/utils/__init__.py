from .batch_augments import *  # noqa: F401,F403
from .ema import *  # noqa: F401,F403
from .strict_pretrained import *  # noqa: F401,F403
