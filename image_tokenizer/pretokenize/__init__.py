"""Pre-tokenization: a dataset of images becomes a dataset of token ids.

`pretokenize` (dataset.py) is the one entry point, its settings one PretokenizeOptions (options.py); behind it
the map path (dataset.py), its DataLoader decoding (loader.py) and the resumable shard writer (streaming.py,
also `pretokenize_streaming`), and the Ray engine (ray_engine.py, `engine="ray"`: the same output written by Ray
Data actors on a cluster). rows.py defines the output rows once, nodes.py the split across workers,
sources.py what a run reads (a dataset spec through data/specs.py), and card.py makes the output folder
loadable as-is and uploads it.
"""

from ..checkpoint import tokenizer_fingerprint
from ..errors import PretokenizeError, StreamingError
from .card import push_dataset_folder, write_dataset_card
from .dataset import pretokenize, token_info, write_token_dataset
from .nodes import NodeFolder, NodeSpec, merge_nodes, node_spec
from .options import PretokenizeOptions
from .rows import INFO_NAME, REPORT_NAME, SOURCE_INDEX, STATE_NAME, ids_dtype
from .sources import load_image_dataset, load_image_splits, rank_device
from .streaming import pretokenize_streaming

__all__ = [
    "INFO_NAME",
    "REPORT_NAME",
    "SOURCE_INDEX",
    "STATE_NAME",
    "NodeFolder",
    "NodeSpec",
    "PretokenizeError",
    "PretokenizeOptions",
    "StreamingError",
    "ids_dtype",
    "load_image_dataset",
    "load_image_splits",
    "merge_nodes",
    "node_spec",
    "pretokenize",
    "pretokenize_streaming",
    "push_dataset_folder",
    "rank_device",
    "token_info",
    "tokenizer_fingerprint",
    "write_dataset_card",
    "write_token_dataset",
]
