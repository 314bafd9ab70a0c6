"""Spaces a searchlight can search: where its seeds sit and what their spheres hold.

:mod:`.volume` builds the spheres of a voxel grid (:func:`build_neighbourhoods`); every
builder returns a :class:`Neighbourhoods`.
"""

from .base import Neighbourhoods
from .volume import build_neighbourhoods

__all__ = ["Neighbourhoods", "build_neighbourhoods"]
