from .activation import *  # noqa: F401,F403
from .ws_conv import *  # noqa: F401,F403
