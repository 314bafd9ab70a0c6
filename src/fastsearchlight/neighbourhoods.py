"""Searchlight neighbourhoods: the names of :mod:`fastsearchlight.spaces` for a volume.

The spheres are built in :mod:`fastsearchlight.spaces.volume`; this module gives them
their usual import path.
"""

from .spaces.base import Neighbourhoods
from .spaces.volume import build_neighbourhoods

__all__ = ["Neighbourhoods", "build_neighbourhoods"]
