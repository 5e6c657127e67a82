"""Interval layers and the value type they exchange."""

from .interval import Interval

__all__ = ["Interval"]
