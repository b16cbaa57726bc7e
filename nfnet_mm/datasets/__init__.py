from .fashion_mnist import *  # noqa: F401,F403
from .mix_dataset import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403
