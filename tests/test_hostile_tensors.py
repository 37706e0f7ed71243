"""Hostile tensors (issue 37, rows 2-4, 8 and 9): views larger than their storage, zip bombs, and malformed module
trees in TorchScript archives and pickled checkpoints, each refused in one line before anything is materialised.

Every attack is a small file written here, scaled so that the code before the fix needed more than 1 GiB (a 2^28
element float32 view is 1 GiB); calls run in the memory-capped worker of tests/hostile.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import pickle
import shutil
import struct
import sys
import types
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import torch

from image_tokenizer import ConversionError
from image_tokenizer.converters import taming
from image_tokenizer.converters.common import load_pickled_checkpoint
from image_tokenizer.converters.tensor_budget import MAX_PICKLE_BYTES, check_view
from image_tokenizer.converters.torchscript import read_torchscript
from image_tokenizer.modeling import VQModel
from tests.hostile import PEAK_LIMIT

GIB_OF_FLOATS = 2**28  # float32 elements in 1 GiB


# ----- a zip written field by field, so that an entry may declare any method, size and CRC -----
@dataclass
class Entry:
    name: str
    raw: bytes  # the bytes as stored (deflated data for method 8)
    size: int  # the declared uncompressed size
    crc: int
    method: int = 0  # 0 stored, 8 deflated


def stored(name: str, data: bytes) -> Entry:
    return Entry(name, data, len(data), zlib.crc32(data))


def deflated_bomb(name: str, head: bytes, zero_mib: int, tail: bytes) -> Entry:
    """head + zero_mib MiB of zeros + tail, deflated: each MiB of zeros compresses to the same 1 kB after a full
    flush, so a GiB costs a kilobyte of file and no time to write."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(2**20)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    last = compressor.compress(tail) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(zero_mib):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(tail, crc)
    return Entry(name, first + block * zero_mib + last, len(head) + zero_mib * 2**20 + len(tail), crc, method=8)


def write_zip(path: Path, entries: Sequence[Entry]) -> Path:
    """A zip holding `entries` as given (names may repeat, sizes and CRCs are taken as declared)."""
    local, central = bytearray(), bytearray()
    for entry in entries:
        name, offset = entry.name.encode(), len(local)
        fields = struct.pack("<HHHHHIII", 20, 0, entry.method, 0, 0x21, entry.crc, len(entry.raw), entry.size)
        local += b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name + entry.raw
        directory_fields = struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, offset)
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields + directory_fields + name
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(entries), len(entries), len(central), len(local), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(local + central + end))
    return path


# ----- data.pkl as TorchScript and torch.save write it -----
class Storage:
    """A storage as data.pkl names it (a persistent id): ('storage', FloatStorage, key, 'cpu', numel)."""

    def __init__(self, key: str, numel: int, kind: type = torch.FloatStorage):
        self.pid = ("storage", kind, key, "cpu", numel)


class View:
    """A tensor as data.pkl describes it: a strided view of a storage, rebuilt by torch._utils._rebuild_tensor_v2."""

    def __init__(self, storage: Storage, size: tuple, stride: tuple, offset: int = 0):
        self.args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


SCRIPTED = types.ModuleType("__torch__.hostile")  # where the archive's module classes claim to live


def scripted(class_name: str = "Module", **attributes) -> object:
    """An object that pickles as an instance of the TorchScript class __torch__.hostile.CLASS_NAME."""
    cls = getattr(SCRIPTED, class_name, None) or type(class_name, (), {"__module__": SCRIPTED.__name__})
    setattr(SCRIPTED, class_name, cls)
    instance = cls.__new__(cls)
    instance.__dict__.update(attributes)
    return instance


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def pickled(root: object) -> bytes:
    out, limit = io.BytesIO(), sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # pickling 3,000 nested modules recurses (in the writer only)
    try:
        with mock.patch.dict(sys.modules, {"__torch__": types.ModuleType("__torch__"), SCRIPTED.__name__: SCRIPTED}):
            _Pickler(out, protocol=2).dump(root)
    finally:
        sys.setrecursionlimit(limit)
    return out.getvalue()


def torchscript_folder(folder: Path, root: object, storages: dict[str, bytes | Entry],
                       extra: Sequence[Entry] = ()) -> Path:
    """A Cosmos-looking folder whose encoder.jit (and decoder.jit, a copy) is an archive of `root`."""
    entries = [stored("archive/data.pkl", pickled(root)), stored("archive/constants.pkl", pickle.dumps((), protocol=2))]
    entries += [s if isinstance(s, Entry) else stored(f"archive/data/{key}", s) for key, s in storages.items()]
    write_zip(folder / "encoder.jit", entries + list(extra))
    shutil.copy(folder / "encoder.jit", folder / "decoder.jit")
    return folder


FOUR_BYTES = struct.pack("<f", 1.0)


# ----- taming checkpoints (tests/test_convert.py builds real ones; here only the codebook matters) -----
TAMING_YAML = """model:
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 8
    n_embed: {n_embed}
    ddconfig: {{double_z: false, z_channels: 8, resolution: 16, in_channels: 3, out_ch: 3, ch: 32, ch_mult: [1, 1],
               num_res_blocks: 1, attn_resolutions: [], dropout: 0.0}}
"""


def taming_folder(folder: Path, codebook: torch.Tensor, n_embed: int) -> Path:
    """A taming log folder (configs/*-project.yaml, checkpoints/last.ckpt) with real encoder and decoder weights
    and the given codebook, so that everything but the codebook passes every check."""
    (folder / "configs").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "configs" / "x-project.yaml").write_text(TAMING_YAML.format(n_embed=n_embed))
    config = taming.config_from_yaml(folder / "configs" / "x-project.yaml")
    small = dataclasses.replace(config, quantizer=dataclasses.replace(config.quantizer, codebook_size=64))
    torch.manual_seed(0)
    state = dict(VQModel(small).weights_state_dict())  # the encoder and decoder do not depend on n_embed
    state["quantize.embedding.weight"] = codebook
    torch.save({"state_dict": state, "hparams": argparse.Namespace(lr=1e-4)}, folder / "checkpoints" / "last.ckpt")
    return folder


def assert_refused(outcome, error_type: str = "ConversionError", *words: str) -> None:
    assert outcome.refused(error_type), (outcome.error_type, outcome.message, outcome.traceback)
    assert "\n" not in outcome.message and len(outcome.message) < 1000, outcome.message
    assert outcome.peak_bytes < PEAK_LIMIT, f"peak {outcome.peak_bytes / 2**20:.0f} MiB"
    for word in words:
        assert word in outcome.message, outcome.message
    print(f"peak {outcome.peak_bytes / 2**20:.0f} MiB: {outcome.message}")


def convert(hostile, folder: Path, **kwargs):
    return hostile.call("image_tokenizer.converters:convert", str(folder), **kwargs)


# ----- TorchScript archives -----
def test_a_stride_0_view_in_a_torchscript_archive_is_refused_before_it_is_materialised(hostile, tmp_path):
    root = scripted(encoder=scripted(weight=View(Storage("0", 1), (GIB_OF_FLOATS,), (0,))))
    outcome = convert(hostile, torchscript_folder(tmp_path, root, {"0": FOUR_BYTES}))
    assert_refused(outcome, "ConversionError", "encoder.jit", "encoder.weight", "storage")


def test_three_stride_0_views_are_refused_too(hostile, tmp_path):
    storage = Storage("0", 1)
    root = scripted(encoder=scripted(**{f"w{i}": View(storage, (2**14, 2**14), (0, 0)) for i in range(3)}))
    outcome = convert(hostile, torchscript_folder(tmp_path, root, {"0": FOUR_BYTES}))
    assert_refused(outcome, "ConversionError", "encoder.jit", "encoder.w0")


def test_a_2_to_the_40_element_view_is_refused_in_one_line(hostile, tmp_path):
    root = scripted(encoder=scripted(weight=View(Storage("0", 1), (2**20, 2**20), (0, 0))))
    outcome = convert(hostile, torchscript_folder(tmp_path, root, {"0": FOUR_BYTES}))
    assert_refused(outcome, "ConversionError", "encoder.weight")


def test_a_deflated_storage_bomb_is_refused_from_its_declared_sizes(hostile, tmp_path):
    root = scripted(encoder=scripted(weight=View(Storage("0", GIB_OF_FLOATS), (GIB_OF_FLOATS,), (1,))))
    bomb = deflated_bomb("archive/data/0", b"", 1024, b"")
    folder = torchscript_folder(tmp_path, root, {"0": bomb})
    assert (folder / "encoder.jit").stat().st_size < 2**21
    outcome = convert(hostile, folder)
    assert_refused(outcome, "ConversionError", "encoder.jit", "archive/data/0")


def test_an_inflated_data_pkl_bomb_is_refused_before_it_is_read(hostile, tmp_path):
    size = 2**30
    bomb = deflated_bomb("archive/data.pkl", b"\x80\x04\x8e" + struct.pack("<Q", size), size // 2**20, b".")
    write_zip(tmp_path / "encoder.jit", [bomb, stored("archive/constants.pkl", pickle.dumps(()))])
    shutil.copy(tmp_path / "encoder.jit", tmp_path / "decoder.jit")
    assert (tmp_path / "encoder.jit").stat().st_size < 2**21
    outcome = convert(hostile, tmp_path)
    assert_refused(outcome, "ConversionError", "encoder.jit", "data.pkl")


def test_a_data_pkl_declaring_more_than_a_description_of_tensors_needs_is_refused(hostile, tmp_path):
    """Under the compression ratio a bomb needs, but over MAX_PICKLE_BYTES: refused from the declared size alone."""
    entry = Entry("archive/data.pkl", bytes(2**20), MAX_PICKLE_BYTES + 1, 0, method=8)
    write_zip(tmp_path / "encoder.jit", [entry, stored("archive/constants.pkl", pickle.dumps(()))])
    shutil.copy(tmp_path / "encoder.jit", tmp_path / "decoder.jit")
    assert_refused(convert(hostile, tmp_path), "ConversionError", "encoder.jit", "data.pkl", f"{MAX_PICKLE_BYTES:,}")


def test_duplicate_entries_are_refused_rather_than_the_last_copy_winning(hostile, tmp_path):
    root = scripted(encoder=scripted(weight=View(Storage("0", 1), (1,), (1,))))
    duplicate = stored("archive/data/0", struct.pack("<f", float("nan")))
    outcome = convert(hostile, torchscript_folder(tmp_path, root, {"0": FOUR_BYTES}, [duplicate]))
    assert_refused(outcome, "ConversionError", "encoder.jit", "archive/data/0", "twice")


def _self_containing() -> object:
    module = scripted()
    module.encoder = module
    return module


def _nested_3000() -> object:
    module = scripted(weight=View(Storage("0", 1), (1,), (1,)))
    for _ in range(3000):
        module = scripted(encoder=module)
    return module


def _non_string_attribute() -> object:
    root = scripted(encoder=scripted())
    root.encoder.__dict__[7] = View(Storage("0", 1), (1,), (1,))  # as a pickle's BUILD can set it
    return root


@pytest.mark.parametrize("make_root, words", [
    (_self_containing, ("'encoder'", "contains itself")),
    (_nested_3000, ("nested deeper than",)),
    (_non_string_attribute, ("attribute name 7",)),
], ids=["module-containing-itself", "3000-nested-modules", "non-string-attribute"])
def test_malformed_module_trees_are_one_line_errors(hostile, tmp_path, make_root, words):
    folder = torchscript_folder(tmp_path, make_root(), {"0": FOUR_BYTES})
    assert_refused(convert(hostile, folder), "ConversionError", "encoder.jit", *words)


def test_a_byteorder_record_that_is_not_text_is_one_line(hostile, tmp_path):
    root = scripted(encoder=scripted(weight=View(Storage("0", 1), (1,), (1,))))
    folder = torchscript_folder(tmp_path, root, {"0": FOUR_BYTES}, [stored("archive/byteorder", b"\xff\xfe")])
    assert_refused(convert(hostile, folder), "ConversionError", "encoder.jit", "byteorder")


def test_code_constants_and_traced_inputs_are_never_run_and_said_to_be_ignored(hostile, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    storage = Storage("0", 4)
    root = scripted(weight=View(storage, (2, 2), (2, 1)))
    extra = [stored("archive/code/__torch__/hostile.py", f"open({str(marker)!r}, 'w')\n".encode()),
             stored("archive/traced_inputs.pkl", pickle.dumps(Payload()))]
    folder = tmp_path / "archive"
    torchscript_folder(folder, root, {"0": struct.pack("<4f", 1, 2, 3, 4)}, extra)
    entries = [e for e in _entries(folder / "encoder.jit") if e.name != "archive/constants.pkl"]
    write_zip(folder / "encoder.jit", entries + [stored("archive/constants.pkl", pickle.dumps(Payload()))])
    outcome = hostile.call("image_tokenizer.converters.torchscript:read_torchscript", str(folder / "encoder.jit"))
    assert outcome.error_type is None, outcome.traceback
    assert not marker.exists()
    notices = [line for line in outcome.stderr.splitlines() if "encoder.jit" in line]
    assert len(notices) == 1 and "neither read nor run" in notices[0], outcome.stderr
    assert all(word in notices[0] for word in ("code/", "constants.pkl", "traced_inputs.pkl"))


def _entries(path: Path) -> list[Entry]:
    with zipfile.ZipFile(path) as archive:
        return [stored(name, archive.read(name)) for name in archive.namelist()]


def test_tensors_that_share_a_storage_without_overlapping_are_read(tmp_path):
    """Tied weights and slices of one storage, as torch.jit.save writes them: each gets its own values."""
    storage = Storage("0", 12)
    root = scripted(a=View(storage, (2, 3), (3, 1)), b=View(storage, (3, 2), (1, 3), offset=6),
                    tied=View(storage, (2, 3), (3, 1)), scalar=View(storage, (), (), offset=11))
    torchscript_folder(tmp_path, root, {"0": struct.pack("<12f", *range(12))})
    tensors = read_torchscript(tmp_path / "encoder.jit").tensors
    values = torch.arange(12.0)
    assert torch.equal(tensors["a"], values[:6].view(2, 3)) and torch.equal(tensors["tied"], tensors["a"])
    assert torch.equal(tensors["b"], values[6:12].view(2, 3).t()) and tensors["scalar"].item() == 11


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script and torch.jit.save, for this check
def test_a_real_torchscript_export_reads_as_torch_jit_load_sees_it(tmp_path):
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3)))
    torch.jit.save(module, str(tmp_path / "m.jit"))
    ours = read_torchscript(tmp_path / "m.jit").tensors
    theirs = torch.jit.load(str(tmp_path / "m.jit")).state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


# ----- pickled checkpoints (torch.load(weights_only=True)) -----
def test_a_taming_checkpoint_with_a_stride_0_codebook_is_refused_before_any_model_is_built(hostile, tmp_path):
    codebook = torch.ones(1).expand(GIB_OF_FLOATS // 8, 8)  # what the yaml declares, in 4 bytes of storage
    folder = taming_folder(tmp_path / "logs", codebook, n_embed=GIB_OF_FLOATS // 8)
    outcome = convert(hostile, folder)
    assert_refused(outcome, "ConversionError", "last.ckpt", "quantize.embedding.weight")


def test_a_2_to_the_40_element_codebook_view_is_refused_in_one_line(hostile, tmp_path):
    folder = taming_folder(tmp_path / "logs", torch.ones(1).expand(2**37, 8), n_embed=64)
    assert_refused(convert(hostile, folder), "ConversionError", "last.ckpt", "quantize.embedding.weight")


def test_a_float8_codebook_is_refused_by_its_dtype(hostile, tmp_path):
    folder = taming_folder(tmp_path / "logs", torch.randn(64, 8).to(torch.float8_e4m3fn), n_embed=64)
    assert_refused(convert(hostile, folder), "ImageTokenizerError", "float8_e4m3fn", "codebook")


def _torch_save_zip(path: Path, data_pkl: bytes | Entry, storages: dict[str, bytes | Entry] | None = None,
                    extra: Sequence[Entry] = ()) -> Path:
    """A checkpoint in torch.save's zip layout (archive/data.pkl, archive/data/KEY), written entry by entry."""
    entries = [data_pkl if isinstance(data_pkl, Entry) else stored("archive/data.pkl", data_pkl),
               stored("archive/byteorder", b"little"), stored("archive/version", b"3\n")]
    entries += [s if isinstance(s, Entry) else stored(f"archive/data/{key}", s) for key, s in (storages or {}).items()]
    return write_zip(path, entries + list(extra))


NAMESPACE = b"cargparse\nNamespace\n)\x81"  # GLOBAL argparse.Namespace, EMPTY_TUPLE, NEWOBJ


@pytest.mark.parametrize("body, words", [
    # BUILD {'__setstate__': 1}, then BUILD {}: torch's unpickler calls the instance's __setstate__ (TypeError)
    (NAMESPACE + b"}X\x0c\x00\x00\x00__setstate__K\x01sb}b", ("TypeError",)),
    # BUILD (None, {1: 2}): slot state whose attribute name is not a string (TypeError)
    (NAMESPACE + b"N}K\x01K\x02s\x86b", ("TypeError",)),
], ids=["namespace-setstate", "non-string-attribute"])
def test_allowlisted_namespace_tricks_are_one_line_errors(hostile, tmp_path, body, words):
    data = b"\x80\x02}X\x04\x00\x00\x00args" + body + b"s."
    path = _torch_save_zip(tmp_path / "vq.pt", data)
    outcome = hostile.call("image_tokenizer.converters.common:load_pickled_checkpoint", str(path))
    assert_refused(outcome, "ConversionError", "vq.pt", *words)


def test_a_checkpoint_zip_bomb_is_refused_before_torch_load_inflates_it(hostile, tmp_path):
    data = pickled({"w": View(Storage("0", GIB_OF_FLOATS), (GIB_OF_FLOATS,), (1,))})
    path = _torch_save_zip(tmp_path / "vq.pt", data, {"0": deflated_bomb("archive/data/0", b"", 1024, b"")})
    assert path.stat().st_size < 2**21
    outcome = hostile.call("image_tokenizer.converters.common:load_pickled_checkpoint", str(path))
    assert_refused(outcome, "ConversionError", "vq.pt", "archive/data/0")


def test_a_checkpoint_data_pkl_bomb_is_refused_before_torch_load_reads_it(hostile, tmp_path):
    size = 2**30
    bomb = deflated_bomb("archive/data.pkl", b"\x80\x04\x8e" + struct.pack("<Q", size), size // 2**20, b".")
    path = _torch_save_zip(tmp_path / "vq.pt", bomb)
    outcome = hostile.call("image_tokenizer.converters.common:load_pickled_checkpoint", str(path))
    assert_refused(outcome, "ConversionError", "vq.pt", "data.pkl")


def test_duplicate_checkpoint_entries_are_refused(hostile, tmp_path):
    data = pickled({"w": View(Storage("0", 1), (1,), (1,))})
    path = _torch_save_zip(tmp_path / "vq.pt", data, {"0": FOUR_BYTES}, (stored("archive/data/0", bytes(4)),))
    outcome = hostile.call("image_tokenizer.converters.common:load_pickled_checkpoint", str(path))
    assert_refused(outcome, "ConversionError", "vq.pt", "archive/data/0", "twice")


def test_a_stride_0_view_in_a_plain_state_dict_is_refused(hostile, tmp_path):
    torch.save({"model": {"w": torch.ones(1).expand(GIB_OF_FLOATS)}}, tmp_path / "pytorch_model.bin")
    outcome = hostile.call("image_tokenizer.converters.common:load_weights_file", str(tmp_path / "pytorch_model.bin"))
    assert_refused(outcome, "ConversionError", "pytorch_model.bin", "model.w")


@pytest.mark.parametrize("state, words", [
    ({"encoder.w": torch.ones(1).expand(GIB_OF_FLOATS)}, ("state_dict.encoder.w", "repeats elements")),
    ({"encoder.w": torch.ones(2), 3: torch.ones(2)}, ("tensors by name", "'state_dict'")),
], ids=["stride-0", "non-string-key"])
def test_a_lightning_state_dict_is_checked_before_use(hostile, tmp_path, state, words):
    torch.save({"state_dict": state, "global_step": 1}, tmp_path / "last.ckpt")
    outcome = hostile.call("image_tokenizer.converters.lightning:lightning_state_dict", str(tmp_path / "last.ckpt"))
    assert_refused(outcome, "ConversionError", "last.ckpt", *words)


def test_shared_storages_and_strided_views_in_a_checkpoint_load(tmp_path):
    base = torch.arange(24.0)
    state = {"a": base[:12].view(3, 4), "b": base[12:].view(4, 3).t(), "tied": base[:12].view(3, 4),
             "row": base.view(6, 4)[2], "empty": torch.ones(1).expand(0, 5), "one": torch.ones(1).expand(1, 1)}
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1.0)}, tmp_path / "ok.ckpt")
    loaded = load_pickled_checkpoint(tmp_path / "ok.ckpt")["state_dict"]
    assert all(torch.equal(loaded[k], state[k]) for k in state)


# ----- the checker itself -----
@pytest.mark.parametrize("size, stride, offset, numel, fine", [
    ((3, 4), (4, 1), 0, 12, True),  # contiguous
    ((4, 3), (1, 4), 0, 12, True),  # transposed
    ((2, 2), (4, 1), 6, 12, True),  # a block inside a bigger storage
    ((5,), (0,), 0, 1, False),  # stride 0
    ((3, 3), (2, 1), 0, 12, False),  # rows overlap
    ((3, 4), (4, 1), 1, 12, False),  # one past the storage
    ((1, 7), (0, 1), 0, 7, True),  # stride 0 on a dimension of size 1
    ((0, 9), (9, 1), 5, 0, True),  # no elements
    ((2,), (-1,), 1, 2, False),  # negative strides do not exist in storages
], ids=["contiguous", "transposed", "block", "stride-0", "overlap", "beyond", "size-1-stride-0", "empty", "negative"])
def test_check_view(size, stride, offset, numel, fine):
    if fine:
        assert check_view(Path("f"), "k", size, stride, offset, numel) == torch.Size(size).numel()
    else:
        with pytest.raises(ConversionError, match="f: tensor 'k'"):
            check_view(Path("f"), "k", size, stride, offset, numel)


@pytest.mark.parametrize("fmt", ["taming", "llamagen"])
def test_a_weight_keyed_by_a_number_is_one_line(hostile, tmp_path, fmt):
    """torch.load accepts int keys in a state dict; a converter must name the problem, not fail on a regex."""
    folder = taming_folder(tmp_path / "logs", torch.randn(64, 8), n_embed=64)
    checkpoint = folder / "checkpoints" / "last.ckpt"
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = torch.load(checkpoint, weights_only=True)["state_dict"]
    state[7] = torch.zeros(3)
    if fmt == "taming":
        torch.save({"state_dict": state}, checkpoint)
        outcome = convert(hostile, folder)
    else:
        torch.save({"model": state}, tmp_path / "vq_ds16_c2i.pt")
        outcome = convert(hostile, tmp_path / "vq_ds16_c2i.pt", format="llamagen")
    assert_refused(outcome, "ConversionError", "keyed by int '7'" if fmt == "taming" else "tensors by name")
