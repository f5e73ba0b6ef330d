"""Small Keras layers used inside the towers."""

from model.layers.masked_mean import MaskedMeanPooling
from model.layers.standardize import Standardize

__all__ = ["MaskedMeanPooling", "Standardize"]
