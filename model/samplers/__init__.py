"""Negative samplers: one interface (`NegativeSampler`), one implementation per module."""

from model.samplers.base import ItemEncoder, NegativeSampler, NegativeSamples
from model.samplers.cross_batch import CrossBatchSampler
from model.samplers.frequency import CountedFrequency, ItemFrequency, StreamingFrequency
from model.samplers.in_batch import InBatchSampler
from model.samplers.mixed import MixedSampler
from model.samplers.popularity import PopularitySampler

__all__ = [
    "CountedFrequency",
    "CrossBatchSampler",
    "InBatchSampler",
    "ItemEncoder",
    "ItemFrequency",
    "MixedSampler",
    "NegativeSampler",
    "NegativeSamples",
    "PopularitySampler",
    "StreamingFrequency",
]
