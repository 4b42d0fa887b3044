"""Pictures: the widget cell's picture without a widget front-end, the training-history file and its plot."""

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from gancourse import recipes
from ganlib import viz
from ganlib.errors import GanlibError

WIDGET_CELL = """
import matplotlib.pyplot as plt
from gancourse import widgets

def show(alpha, kind):
    print(f"alpha={alpha} kind={kind}")
    plt.plot([0, 1], [0, alpha])
    plt.show()

widgets.interactive(show, alpha=(0.0, 1.0, 0.25, 0.5), kind=["line", "dots"])
"""
NO_SHOW = """widgets.interactive(lambda beta: plt.plot([0, beta]), beta=(0.0, 1.0, 0.5))  # a figure left open"""
MOVE_SLIDER = """
import ipywidgets
slider, = [w for w in ipywidgets.widgets.widget._instances.values() if isinstance(w, ipywidgets.FloatSlider)]
slider.value = 1.0
"""


def test_interactive_draws_its_start_frame_as_an_ordinary_output_then_the_sliders():
    """Run like nbconvert or a static viewer does (a kernel, no widget front-end): the cell must still hold the
    picture for the start values, as a plain image/png output, and then the sliders."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%matplotlib inline"), nbformat.v4.new_code_cell(WIDGET_CELL)]
    client = NotebookClient(nb, timeout=120, kernel_name="python3")
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        client.execute_cell(nb.cells[1], 1)
        outputs = nb.cells[1].outputs
        start_png = next(o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {}))
        nb.cells.append(nbformat.v4.new_code_cell(MOVE_SLIDER))
        client.execute_cell(nb.cells[2], 2)
        nb.cells.append(nbformat.v4.new_code_cell(NO_SHOW))
        client.execute_cell(nb.cells[3], 3)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "alpha=0.5 kind=line" in text  # drawn once, at the start values
    images = [i for i, o in enumerate(outputs) if "image/png" in o.get("data", {})]
    sliders = [i for i, o in enumerate(outputs) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(images) == 1 and len(sliders) == 1, [o.get("data", {}).keys() for o in outputs]
    assert images[0] < sliders[0]  # the picture first, the widget below it
    assert "FloatSlider" in outputs[sliders[0]]["data"]["text/plain"]
    # moving a slider redraws the same picture in place (an update of its display), not a second picture
    assert "alpha=1.0 kind=line" in "".join(o.get("text", "") for o in nb.cells[2].outputs)
    moved = [o["data"]["image/png"] for o in nb.cells[1].outputs if "image/png" in o.get("data", {})]
    assert len(moved) == 1 and moved[0] != start_png
    # a function that leaves its figure open instead of calling plt.show(): still one picture, then the slider
    kinds = [o["data"] for o in nb.cells[3].outputs if o.output_type == "display_data"]
    assert ["image/png" in d for d in kinds] == [True, False] and "FloatSlider" in kinds[1]["text/plain"]


def test_every_run_folder_gets_its_history_as_csv_and_plot_history_draws_it(tmp_path):
    t = recipes.make_trainer("gan", profile="smoke", run_dir=tmp_path, device="cpu", steps=30, log_every=10)
    t.train(callback=lambda tr: tr.record(fd=100.0 / tr.step), every=15, progress=False)
    rows = (tmp_path / viz.HISTORY_FILE).read_text().splitlines()
    columns = rows[0].split(",")
    assert columns[:3] == ["step", "kimg", "seconds"]
    assert {"loss_d", "loss_g", "logit_real", "logit_fake", "fd"} <= set(columns)
    h = viz.read_history(tmp_path)
    assert h["step"].tolist() == [e["step"] for e in t.history] == [10, 15, 20, 30]
    for name in ("loss_d", "logit_fake"):
        logged = [e.get(name, np.nan) for e in t.history]
        np.testing.assert_allclose(h[name], logged, rtol=1e-12)  # floats survive the text round trip
    np.testing.assert_allclose(h["fd"], [np.nan, 100 / 15, np.nan, 100 / 30])  # only where it was recorded
    assert viz.read_history(t.history).keys() == h.keys()
    axes = viz.plot_history(tmp_path, metrics=("fd", "not recorded"))
    assert [ax.get_ylabel() for ax in axes] == ["loss", "D's mean logit", "fd"]
    assert isinstance(axes, list) and len(axes) == 3 and len(axes[0].figure.axes) == 3  # one per panel
    assert [line.get_label() for line in axes[1].get_lines()] == ["logit_real", "logit_fake"]
    np.testing.assert_allclose(axes[2].get_lines()[0].get_ydata(), [100 / 15, 100 / 30])
    plt.close("all")
    assert viz.read_history(tmp_path / viz.HISTORY_FILE).keys() == h.keys()
    resumed = recipes.make_trainer("gan", profile="smoke", run_dir=tmp_path, device="cpu", steps=40, log_every=10)
    resumed.load_checkpoint().train(progress=False)  # the file keeps the steps before the resume
    assert viz.read_history(tmp_path)["step"].tolist() == [10, 15, 20, 30, 40]
    with pytest.raises(GanlibError, match="no history.csv in '.*elsewhere'"):
        viz.read_history(tmp_path / "elsewhere")


def test_image_pictures_take_numpy_channels_last_and_uint8_and_refuse_the_rest():
    """A batch [N, C, H, W] in [-1, 1] as a tensor, the same as a NumPy array, channels last, or uint8 pixels (as a
    samples file holds them) make the same grid; what cannot be images is one GanlibError."""
    import torch

    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    grid = viz.image_grid(x, nrow=4)
    assert grid.shape == (2 * 9 + 1, 4 * 9 + 1, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(viz.image_grid(x.numpy(), nrow=4), grid)
    np.testing.assert_array_equal(viz.image_grid(x.permute(0, 2, 3, 1).numpy(), nrow=4), grid)
    pixels = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # a samples file's images
    np.testing.assert_array_equal(viz.image_grid(pixels, nrow=4), grid)
    ax = viz.show_images(x.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), viz.image_grid(x))
    plt.close("all")
    with pytest.raises(GanlibError, match=r"1 or 3 channels, on axis 1 \[N, C, H, W\] or last"):
        viz.show_images(np.zeros((2, 5, 8, 8)))
    with pytest.raises(GanlibError, match=r"a batch \[N, C, H, W\], got shape \[3, 8, 8\]: add a batch axis"):
        viz.image_grid(x[0])
    with pytest.raises(GanlibError, match="a tensor or a NumPy array"):
        viz.save_image_grid([[1, 2]], "x.png")
