from .sam_classifier import SAMImageClassifier

__all__ = ['SAMImageClassifier']
