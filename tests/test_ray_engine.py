"""The Ray engine on a real local Ray (started once per session, two CPUs, no dashboard): ids equal to the local
engine's, WebDataset in and our layout out, a killed worker and a killed driver each leaving every row once, bad
samples skipped under skip_bad; and the resource plan that keeps a CPU for the reads."""

from __future__ import annotations

import json
import os
import sys

import datasets
import numpy as np
import pytest
import torch

from image_tokenizer import ImageTokenizer, PretokenizeError
from image_tokenizer.cli import main
from image_tokenizer.pretokenize import INFO_NAME, pretokenize, ray_engine
from image_tokenizer.pretokenize.ray_engine import plan_resources
from tests.helpers import tiny_config, write_webdataset

RAY_CPUS = 2  # two actors on two CPUs deadlock a map_batches unless the reads keep a CPU (plan_resources)


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray", reason="the Ray engine's tests need pip install 'image-tokenizer[ray]'")
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def tok_dir(tmp_path):
    torch.manual_seed(0)
    ImageTokenizer(tiny_config()).save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def image_rows(count: int) -> datasets.Dataset:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(count)]
    return datasets.Dataset.from_dict({"image": images, "label": list(range(count))},
                                      features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))


def test_resources_leave_a_cpu_for_the_reads():
    assert plan_resources(2, 0) == ray_engine.ResourcePlan(1, 1.0, 0.0, 1.0)  # ray.init() on two cores
    assert plan_resources(2, 0, actors=2).cpus_per_actor == 0.5  # two actors share the CPU the reads leave
    assert plan_resources(1, 0) == ray_engine.ResourcePlan(1, 0.5, 0.0, 0.5)
    assert plan_resources(16, 4, gpus_per_actor=1) == ray_engine.ResourcePlan(4, 1.0, 1.0, 1.0)
    assert plan_resources(17, 0).actors == 12  # CPU actors leave a quarter of the CPUs to decoding
    with pytest.raises(PretokenizeError, match="cluster's 2"):
        plan_resources(16, 2, actors=3, gpus_per_actor=1)


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, tokenizer, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when it is not installed
    with pytest.raises(PretokenizeError, match=r"pip install 'image-tokenizer\[ray\]'"):
        pretokenize(image_rows(2), tokenizer, engine="ray", output_dir=str(tmp_path / "out"))


def test_ids_and_shards_equal_the_local_engines(local_ray, tokenizer, tmp_path):
    rows = image_rows(10)
    settings = {"flip": True, "shard_size": 4, "batch_size": 3, "progress": False}
    on_ray = pretokenize(rows, tokenizer, engine="ray", actors=2, output_dir=str(tmp_path / "ray"), **settings)
    local = pretokenize(rows, tokenizer, flip=True)
    for column in ("input_ids", "source_index", "flipped", "label"):
        assert on_ray[column] == local[column], column
    streamed = tmp_path / "streamed"
    pretokenize(rows, tokenizer, streaming=True, output_dir=str(streamed), **settings)
    # the same rows cut into the same shards: the same bytes, so the same content-named files
    assert sorted(os.listdir(tmp_path / "ray" / "data")) == sorted(os.listdir(streamed / "data"))
    assert datasets.load_dataset(str(tmp_path / "ray"), split="train")["input_ids"] == on_ray["input_ids"]


def test_webdataset_in_our_layout_out_with_bad_samples_skipped(local_ray, tok_dir, tmp_path, capsys):
    keys = write_webdataset(tmp_path, shards=4, per_shard=3, bad=("000020001",))
    spec, out = f"wds:{tmp_path}/{{00000..00003}}.tar", tmp_path / "out"
    command = ["pretokenize", "--data", spec, "--engine", "ray", "--output", str(out), "--model", str(tok_dir), "--no-progress"]
    assert main(command) == 2  # a bad sample stops the run, named
    assert "row 7 (000020001.png): cannot decode image" in capsys.readouterr().err
    assert main([*command, "--skip-bad", "--overwrite"]) == 0
    tokens = datasets.load_dataset(str(out), split="train")
    good = [key for key in keys if key != "000020001"]
    assert tokens["__key__"] == good and tokens["txt"] == [f"caption {key}" for key in good]
    assert tokens["json"][0] == {"width": 20, "source": keys[0]} and tokens["source_index"] == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert len(list((out / "data").glob("shard-*.parquet"))) == 4  # one shard per tar
    local = pretokenize(spec, ImageTokenizer.from_pretrained(tok_dir), skip_bad=True)
    assert tokens["input_ids"] == local["input_ids"]


class DiesOnce(ImageTokenizer):
    """A tokenizer whose first encode in a fresh marker folder kills its worker process, as an OOM kill would."""

    marker = ""

    def encode(self, *args, **kwargs):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().encode(*args, **kwargs)


def test_a_killed_worker_and_a_killed_driver_leave_every_row_once(local_ray, tokenizer, tmp_path, monkeypatch, request):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actor's class travels with it
    request.addfinalizer(lambda: ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__]))
    dies = DiesOnce(tokenizer.config)
    dies.model.load_state_dict(tokenizer.model.state_dict())
    dies.marker = str(tmp_path / "died")
    rows, out = image_rows(12), tmp_path / "out"
    settings = {"engine": "ray", "shard_size": 3, "batch_size": 3, "output_dir": str(out), "progress": False}
    written = []

    def killed_after_two(folder, index, *args, **kwargs):  # the driver dies once two shards are on disk
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(index)
        return write_shard(folder, index, *args, **kwargs)

    write_shard = ray_engine.write_shard
    monkeypatch.setattr(ray_engine, "write_shard", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        pretokenize(rows, dies, **settings)
    assert os.path.exists(dies.marker) and not (out / INFO_NAME).exists()  # a worker died; the run did not finish
    first = {path.name: path.stat().st_ino for path in (out / "data").glob("*.parquet")}
    assert len(first) == 2
    monkeypatch.setattr(ray_engine, "write_shard", write_shard)
    again = pretokenize(rows, dies, **settings)
    assert sorted(again["source_index"]) == list(range(12))  # every row once
    assert all((out / "data" / name).stat().st_ino == inode for name, inode in first.items())  # not rewritten
    assert again["input_ids"] == pretokenize(rows, tokenizer)["input_ids"]


def test_a_multiscale_tokenizer_s_rows_and_layout_equal_the_streaming_path(local_ray, tmp_path):
    torch.manual_seed(0)
    multiscale = ImageTokenizer(tiny_config(kind="multiscale", scales=(1, 2, 4, 8)))
    rows, settings = image_rows(4), {"shard_size": 4, "batch_size": 2, "progress": False}
    pretokenize(rows, multiscale, engine="ray", actors=1, output_dir=str(tmp_path / "ray"), **settings)
    pretokenize(rows, multiscale, streaming=True, output_dir=str(tmp_path / "streamed"), **settings)
    # the same flat ids in layout order and the finest grid as grid_h x grid_w: the same bytes, the same file names
    assert os.listdir(tmp_path / "ray" / "data") == os.listdir(tmp_path / "streamed" / "data")
    info = json.loads((tmp_path / "ray" / INFO_NAME).read_text())
    assert info["layout"] == multiscale.layout.to_dict()
