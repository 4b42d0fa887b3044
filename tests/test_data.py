import math

import numpy as np
import pytest
import torch
from PIL import Image

from gancourse import datasets
from ganlib import data
from ganlib.errors import GanlibError, check_images


def test_ring8_protocol():
    d = data.load("ring8")
    assert len(d) == 100_000 and d.points.shape == (100_000, 2)
    assert d.centres.shape == (8, 2) and d.std == 0.01
    assert torch.allclose(d.centres.norm(dim=1), torch.ones(8))
    assert len({tuple(np.round(c, 6)) for c in d.centres.tolist()}) == 8  # 8 distinct modes (no linspace bug)
    angles = torch.atan2(d.centres[:, 1], d.centres[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles.sort().values, torch.arange(8) * 2 * math.pi / 8, atol=1e-6)
    offsets = d.points - d.centres[d.modes]
    assert abs(offsets.std().item() - 0.01) < 2e-4
    assert torch.bincount(d.modes).min() > 0.11 * len(d)  # equal weights


def test_grid25_protocol():
    d = data.load("grid25")
    assert d.centres.shape == (25, 2) and d.std == 0.05
    assert sorted(set(d.centres[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    offsets = d.points - d.centres[d.modes]
    assert abs(offsets.std().item() - 0.05) < 1e-3


def test_toys_deterministic_from_seed():
    a, b, c = data.load("ring8", seed=1), data.load("ring8", seed=1), data.load("ring8", seed=2)
    assert torch.equal(a.points, b.points) and not torch.equal(a.points, c.points)


def test_digits_splits_and_scaling():
    train, test, full = (data.load("digits", split=s) for s in ("train", "test", "all"))
    assert len(train) + len(test) == len(full) == 1797
    assert train.images.shape[1:] == (1, 8, 8) and train.num_classes == 10
    # the split is stratified: every class is about 20 % test
    for c in range(10):
        share = (test.labels == c).sum() / (full.labels == c).sum()
        assert 0.17 < share < 0.23
    # no image is in both splits (compare as bytes)
    seen = {bytes(x.numpy()) for x in train.images}
    assert sum(bytes(x.numpy()) in seen for x in test.images) < 5  # a few digits are pixel-identical duplicates
    x, y = train.batch(torch.arange(10))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1 and y.shape == (10,)
    from sklearn.datasets import load_digits

    raw = load_digits().images  # values 0..16
    x_all = full.batch(torch.arange(1797))[0][:, 0]
    assert np.allclose((x_all.numpy() + 1) / 2, np.round(raw * 255 / 16) / 255, atol=1e-6)


@pytest.mark.parametrize("res", [16, 32, 64])
def test_digits_resize(res):
    d = data.load("digits", resolution=res)
    assert d.images.shape == (1438, 1, res, res)
    # the resized mean brightness matches the original within rounding
    small = data.load("digits").images.float().mean()
    assert abs(d.images.float().mean() - small) < 2.0


@pytest.mark.parametrize("res", [12, 0, 3, 2048])
def test_bad_resolution(res):
    with pytest.raises(GanlibError, match="power of two"):
        data.load("digits", resolution=res)


def test_unknown_dataset():
    for load in (data.load, datasets.load):
        with pytest.raises(GanlibError, match="unknown dataset 'mnsit'.*digits"):
            load("mnsit")
    with pytest.raises(GanlibError, match="unknown dataset 'mnist'.*load through gancourse.datasets.load"):
        data.load("mnist")  # the library holds the offline sets only


def test_the_course_loader_serves_the_offline_sets_as_the_library_does():
    assert torch.equal(datasets.load("shapes", 8, split="test").images, data.load("shapes", 8, split="test").images)
    assert torch.equal(datasets.load("ring8", seed=3).points, data.load("ring8", seed=3).points)


def test_online_dataset_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("GANLIB_OFFLINE", "1")
    monkeypatch.setenv("GANLIB_DATA", str(tmp_path))
    with pytest.raises(GanlibError) as e:
        datasets.load("mnist")
    assert "\n" not in str(e.value) and "digits" in str(e.value) and "GANLIB_OFFLINE" in str(e.value)


def _write(path, size, mode="RGB", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_folder_rgb_with_classes(tmp_path):
    for cls in ("cats", "dogs"):
        for i in range(3):
            _write(tmp_path / cls / f"{i}.png", (32, 32), value=40 * i)
    d = datasets.load(f"folder:{tmp_path}", resolution=16)
    assert d.images.shape == (6, 3, 16, 16)
    assert d.class_names == ["cats", "dogs"] and d.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert d.images[0, 2].float().mean() == 255  # blue channel of value 0 = 255, survives resizing


def test_folder_grey_default_resolution(tmp_path):
    for i in range(2):
        _write(tmp_path / f"{i}.png", (40, 40), mode="L")
    d = datasets.load(f"folder:{tmp_path}")
    assert d.images.shape == (2, 1, 32, 32) and d.labels is None  # largest power of two not above 40


@pytest.mark.parametrize("case,match", [("empty", "no images"), ("mixed", "different sizes"),
                                        ("oblong", "not square"), ("missing", "does not exist"),
                                        ("corrupt", "not a readable image"), ("tiny", "3x3, too small"),
                                        ("stray", "stray.png' lies beside the class folders")])
def test_folder_errors(tmp_path, case, match):
    if case == "tiny":
        _write(tmp_path / "a.png", (3, 3))
    elif case == "stray":  # one image outside the class folders would silently drop every label
        for cls in ("cats", "dogs"):
            _write(tmp_path / cls / "0.png", (16, 16))
        _write(tmp_path / "stray.png", (16, 16))
    elif case == "mixed":
        _write(tmp_path / "a.png", (32, 32))
        _write(tmp_path / "b.png", (64, 64))
    elif case == "oblong":
        _write(tmp_path / "a.png", (32, 16))
    elif case == "missing":
        tmp_path = tmp_path / "nope"
    elif case == "corrupt":
        (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(GanlibError, match=match) as e:
        datasets.load(f"folder:{tmp_path}")
    assert "\n" not in str(e.value)


def test_folder_upsampling_is_announced(tmp_path):
    for i in range(2):
        _write(tmp_path / f"{i}.png", (12, 12), mode="L")
    with pytest.warns(UserWarning, match=r"12x12 images .* are upsampled to 16x16 .* pass --resolution 8"):
        d = datasets.load(f"folder:{tmp_path}", resolution=16)
    assert d.images.shape == (2, 1, 16, 16)


def test_check_images_messages():
    x = torch.zeros(2, 1, 16, 16)
    with pytest.raises(GanlibError, match="grey image given to an RGB model"):
        check_images(x, 3, 16, "D")
    with pytest.raises(GanlibError, match="expects 16x16"):
        check_images(torch.zeros(2, 3, 32, 32), 3, 16, "D")
    with pytest.raises(GanlibError, match="batch axis"):
        check_images(torch.zeros(3, 16, 16), 3, 16, "D")
    check_images(torch.zeros(2, 3, 16, 16), 3, 16, "D")


def test_models_refuse_uint8_float64_and_channels_last_images_in_one_line():
    """What a student passes most often by mistake, said with its fix: raw uint8 pixels, float64 from NumPy,
    channels last as image files and `sample` store them (not a suggestion to build the model for 16 channels)."""
    from ganlib.models import dcgan

    D = dcgan.Discriminator(resolution=16, img_channels=1, width=8)
    with pytest.raises(GanlibError, match=r"float images in \[-1, 1\], got torch.uint8: convert them with "
                                          r"x.float\(\) / 127.5 - 1"):
        D(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(GanlibError, match=r"has torch.float32 weights and got float64 images: convert them with "
                                          r"x.float\(\)\.$"):
        D(torch.zeros(2, 1, 16, 16, dtype=torch.float64))
    with pytest.raises(GanlibError, match=r"got \[2, 16, 16, 1\], which looks channels last \[N, H, W, C\]: "
                                          r"reorder it with x.permute\(0, 3, 1, 2\)") as e:
        D(torch.zeros(2, 16, 16, 1))
    assert "img_channels" not in str(e.value)
    assert D.double()(torch.zeros(2, 1, 16, 16, dtype=torch.float64)).dtype == torch.float64  # a float64 model


def test_empty_folder_path_is_refused():
    """'folder:' without a path would scan the current folder; it is refused, with an example."""
    for name in ("folder:", "folder:  "):
        with pytest.raises(GanlibError, match="folder: needs the path of a folder of images after the colon"):
            datasets.load(name)


def test_to_uint8_roundtrip():
    d = data.load("digits", resolution=16)
    x, _ = d.batch(torch.arange(20))
    assert torch.equal(data.to_uint8(x), d.images[:20])


# ----------------------------------------------------------------------------------------------------------
# shapes


def test_shapes_layout_and_factors():
    d = data.load("shapes", resolution=16)
    assert isinstance(d, data.ShapesData) and d.images.shape == (20_000, 3, 16, 16) and d.images.dtype == torch.uint8
    assert d.num_classes == 3 and d.class_names == ["circle", "square", "triangle"]
    f = d.factors
    assert set(f) == {"shape", "colour", "background", "x", "y", "size", "rotation"}
    assert torch.equal(d.labels, f["shape"])
    for name, k in (("shape", 3), ("colour", 6), ("background", 3)):
        counts = torch.bincount(f[name], minlength=k)
        assert len(counts) == k and counts.min() > 0.8 * len(d) / k  # every value, about equally often
    assert f["size"].min() >= 0.18 and f["size"].max() <= 0.30
    # the whole shape (radius <= 1.2 size, the triangle's corners) stays inside the image
    assert (f["x"] - f["size"] >= 0.03 - 1e-6).all() and (f["x"] + f["size"] <= 0.97 + 1e-6).all()
    x, y = d.batch(torch.arange(8))
    assert x.shape == (8, 3, 16, 16) and x.min() >= -1 and x.max() <= 1 and torch.equal(y, f["shape"][:8])
    sub = d.subset(torch.tensor([3, 1]))
    assert torch.equal(sub.images, d.images[[3, 1]]) and torch.equal(sub.factors["x"], f["x"][[3, 1]])


def test_shapes_deterministic_and_splits_disjoint():
    a, b = data.load("shapes", 8, split="test"), data.load("shapes", 8, split="test")
    assert len(a) == 2000 and torch.equal(a.images, b.images)
    c = data.load("shapes", 8, split="test", seed=1)
    assert not torch.equal(a.factors["x"], c.factors["x"])
    train = data.load("shapes", 16)
    keys = lambda d: set(zip(*(d.factors[k].tolist() for k in ("x", "y", "size", "rotation"))))
    assert not keys(a) & keys(train)
    with pytest.raises(GanlibError, match="split 'all' does not exist for shapes"):
        data.load("shapes", split="all")


def test_shapes_resolution_is_a_power_of_two():
    with pytest.raises(GanlibError, match="power of two"):
        data.load("shapes", resolution=24)
