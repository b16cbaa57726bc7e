from .nfnet_head import *  # noqa: F401,F403
