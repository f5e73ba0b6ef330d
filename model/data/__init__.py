"""Interaction logs and side features: records, file loaders, MovieLens-100K, time-ordered splits."""

from model.data.columns import DataError
from model.data.loaders import load_feature_table, load_interactions
from model.data.movielens import MovieLensData, load_movielens_100k, movielens_100k_dir, read_atomic_file
from model.data.split import Split, global_time_split, leave_last_out
from model.data.tables import ColumnKind, FeatureTable, InteractionLog

__all__ = [
    "ColumnKind",
    "DataError",
    "FeatureTable",
    "InteractionLog",
    "MovieLensData",
    "Split",
    "global_time_split",
    "leave_last_out",
    "load_feature_table",
    "load_interactions",
    "load_movielens_100k",
    "movielens_100k_dir",
    "read_atomic_file",
]
