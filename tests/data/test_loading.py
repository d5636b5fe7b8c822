import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from tokenizer_zoo.data import DatasetLoadError, EmbeddedPhotos, HFImageDataset, InvalidImageError, find_image_column, load_image_dataset
from tokenizer_zoo.data.transforms import eval_transform


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(np.full((20, 20), 77, np.uint8), mode="L").save(folder / "grey.png")
    Image.fromarray(np.zeros((24, 24, 4), np.uint8), mode="RGBA").save(folder / "clear.png")  # transparent -> white
    return folder


def _load(folder, tmp_path, **kwargs):
    return load_image_dataset(f"imagefolder:{folder}", split="train", image_size=16, train=False,
                              cache_dir=str(tmp_path / "hf_cache"), **kwargs)


def test_imagefolder_loads_every_file_as_rgb_in_range(image_folder, tmp_path):
    dataset = _load(image_folder, tmp_path)
    assert isinstance(dataset, torch.utils.data.Dataset) and len(dataset) == 3
    items = [dataset[i]["pixel_values"] for i in range(3)]
    for item in items:
        assert item.shape == (3, 16, 16) and item.min() >= -1 and item.max() <= 1
    means = sorted(round(float(item.mean()), 3) for item in items)
    assert means[-1] == 1.0  # the transparent image is white
    assert any(abs(m - (77 / 127.5 - 1)) < 1e-3 for m in means)  # the grey one keeps its level
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["pixel_values"].shape == (3, 3, 16, 16)


def test_imagefolder_with_data_dir_argument(image_folder, tmp_path):
    dataset = load_image_dataset("imagefolder", data_dir=str(image_folder), image_size=8, train=True,
                                 cache_dir=str(tmp_path / "hf_cache"))
    assert dataset[0]["pixel_values"].shape == (3, 8, 8)


def test_imagefolder_corrupt_file_error_names_it(image_folder, tmp_path):
    (image_folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    dataset = _load(image_folder, tmp_path)
    with pytest.raises(InvalidImageError, match="zz_broken.png"):
        [dataset[i] for i in range(len(dataset))]


def test_imagefolder_needs_a_folder():
    with pytest.raises(DatasetLoadError, match="imagefolder:PATH"):
        load_image_dataset("imagefolder")


def test_missing_folder_and_unknown_split_are_clear(image_folder, tmp_path):
    with pytest.raises(DatasetLoadError, match="could not load imagefolder"):
        _load(tmp_path / "nowhere", tmp_path)
    with pytest.raises(DatasetLoadError, match="validation"):
        load_image_dataset(f"imagefolder:{image_folder}", split="validation", cache_dir=str(tmp_path / "hf_cache"))


def test_hub_dataset_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetLoadError, match="embedded"):
        load_image_dataset("tokenizer-zoo-tests/definitely-not-a-cached-dataset", split="train")


def test_image_column_detection():
    features = datasets.Features({"label": datasets.ClassLabel(names=["a", "b"]), "img": datasets.Image()})
    assert find_image_column(features) == "img"
    assert find_image_column(features, "img") == "img"
    with pytest.raises(DatasetLoadError, match="no column 'photo'"):
        find_image_column(features, "photo")
    with pytest.raises(DatasetLoadError, match="image_column"):
        find_image_column(datasets.Features({"text": datasets.Value("string")}))
    with pytest.raises(DatasetLoadError, match="several"):
        find_image_column(datasets.Features({"a": datasets.Image(), "b": datasets.Image()}))


def test_in_memory_hub_style_dataset_with_encoded_images():
    images = [Image.fromarray(np.full((12, 18, 3), v, np.uint8)) for v in (0, 255)]
    table = datasets.Dataset.from_dict({"picture": images, "label": [0, 1]},
                                       features=datasets.Features({"picture": datasets.Image(), "label": datasets.Value("int64")}))
    dataset = HFImageDataset(table, find_image_column(table.features), eval_transform(8), "memory")
    assert torch.allclose(dataset[0]["pixel_values"], torch.tensor(-1.0))
    assert torch.allclose(dataset[1]["pixel_values"], torch.tensor(1.0))
    assert "label" not in dataset[0]
    labelled = HFImageDataset(table, "picture", eval_transform(8), "memory", label_column="label")
    assert [int(labelled[i]["label"]) for i in range(2)] == [0, 1] and labelled[1]["label"].dtype == torch.int64
    with pytest.raises(DatasetLoadError, match="no label column 'class'"):
        HFImageDataset(table, "picture", eval_transform(8), "memory", label_column="class")


def test_embedded_by_name():
    dataset = load_image_dataset("embedded", split="eval", image_size=16, train=False, length=5)
    assert isinstance(dataset, EmbeddedPhotos) and len(dataset) == 5 and not dataset.random_crops
    assert dataset[4]["pixel_values"].shape == (3, 16, 16)
