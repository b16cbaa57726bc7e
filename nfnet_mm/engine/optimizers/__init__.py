from .amp import *  # noqa: F401,F403
from .agc import *  # noqa: F401,F403
from .sam import *  # noqa: F401,F403
