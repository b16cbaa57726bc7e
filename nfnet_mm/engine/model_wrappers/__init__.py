from .sam_ddp import *  # noqa: F401,F403
