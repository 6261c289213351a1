"""dedup: cluster news articles that report the same story.

>>> import dedup
>>> docs = ["Quake hits Izmir", "Izmir quake kills two", "Central bank holds rates"]
>>> result = dedup.cluster(docs)
>>> sorted(c.size for c in result.clusters)
[1, 2]
"""

from dedup.compare import Comparison, compare, score_pairs
from dedup.errors import (
    ConfigError,
    DedupError,
    DuplicateIdError,
    EmptyDocumentError,
    FieldError,
    InputError,
)
from dedup.evaluate import Scores, score
from dedup.index import StoryIndex
from dedup.io import FieldMap, iter_documents, read_documents
from dedup.params import PRESETS, Params, resolve_params
from dedup.pipeline import StoryClusterer, cluster
from dedup.records import Cluster, ClusterResult, Document

__all__ = [
    "PRESETS",
    "Cluster",
    "ClusterResult",
    "Comparison",
    "ConfigError",
    "DedupError",
    "Document",
    "DuplicateIdError",
    "EmptyDocumentError",
    "FieldError",
    "FieldMap",
    "InputError",
    "Params",
    "Scores",
    "StoryClusterer",
    "StoryIndex",
    "cluster",
    "compare",
    "iter_documents",
    "read_documents",
    "resolve_params",
    "score",
    "score_pairs",
]
__version__ = "0.1.0"
