from .nfnet import *  # noqa: F401,F403
