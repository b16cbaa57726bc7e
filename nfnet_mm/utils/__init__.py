from .checkpoint import *  # noqa: F401,F403
