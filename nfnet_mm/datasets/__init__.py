from .fashion_mnist import (DEFAULT_FASHION_MNIST_ROOT, FashionMNISTIdx,
                            GrayToRGB)
from .mix_dataset import MixupCutMixDataset
from .transforms import (NFPosterize, NFRandAugment, NFTranslate,
                         nf_randaug_policies)

__all__ = [
    'DEFAULT_FASHION_MNIST_ROOT', 'FashionMNISTIdx', 'GrayToRGB',
    'MixupCutMixDataset', 'NFPosterize', 'NFRandAugment', 'NFTranslate',
    'nf_randaug_policies'
]
