"""Shared fixtures: tiny configs so the whole suite runs in minutes on 2 CPU cores, offline."""

import atexit
import gc
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported anywhere
# torch's idle OpenMP threads sleep instead of spinning (before torch is imported; subprocesses inherit it). On busy
# shared cores a spinning thread burns its time slice waiting for a descheduled peer: the bundled-prior test took
# 35 CPU seconds spinning at load 5, 1.6 sleeping. No result changes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One torch thread per process (subprocesses inherit it): the suite's models are tiny, so a second thread mostly
# synchronises; measured on 2 shared cores, test_train.py and test_quantizer.py took 42 CPU seconds with torch's
# default threads and 20 with one, for the same results.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Each test session gets its own Hugging Face home and datasets cache (set before either library is imported): a
# cache shared with another run, or with the user's, can hand back rows prepared by someone else (issue 37).
_SESSION_HOME = tempfile.mkdtemp(prefix="image-tokenizer-tests-hf-")
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _SESSION_HOME
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_HOME, "datasets")

import numpy as np
import pytest
import torch

from image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from tests.helpers import tiny_config
from tests.hostile import HostileWorker
from tests.preloaded_python import PreloadedPython


def pytest_collection_finish(session: pytest.Session) -> None:
    """The half million objects of torch, transformers and datasets live to the end: frozen, the garbage collector's
    full passes skip them (they took 1.6 of 25 CPU seconds in a sample of the suite, 1.0 frozen)."""
    gc.freeze()


@pytest.fixture
def config() -> ImageTokenizerConfig:
    return tiny_config()


@pytest.fixture
def tokenizer(config) -> ImageTokenizer:
    torch.manual_seed(0)
    return ImageTokenizer(config)


@pytest.fixture
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8) for _ in range(11)]


@pytest.fixture(scope="session")
def _hostile_worker_holder():
    holder: list[HostileWorker] = []
    yield holder
    for worker in holder:
        worker.close()


@pytest.fixture
def hostile(_hostile_worker_holder) -> HostileWorker:
    """The session's memory-capped worker for calls on hostile files (a new one if the last call killed it)."""
    if not _hostile_worker_holder or not _hostile_worker_holder[-1].alive():
        _hostile_worker_holder.append(HostileWorker())
    return _hostile_worker_holder[-1]


@pytest.fixture(scope="session")
def preloaded_python():
    """A `python` executable that starts in milliseconds, for tests that run many short scripts: its commands are
    forked from one server that imported torch, transformers and datasets once (tests/preloaded_python.py). Its
    children's CPU time is counted when the server exits, at the end of the session."""
    python = PreloadedPython()
    yield str(python.executable)
    python.close()
