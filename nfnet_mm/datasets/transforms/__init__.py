from .randaugment import *  # noqa: F401,F403
