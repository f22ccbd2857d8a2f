from factbridge.backends.vectors.base import VectorIndex
from factbridge.backends.vectors.numpy_index import NumpyIndex

__all__ = ["NumpyIndex", "VectorIndex"]
