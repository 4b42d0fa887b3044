"""Pictures: the widget cell's picture without a widget front-end, the training-history file and its plot."""

import nbformat
from nbclient import NotebookClient

WIDGET_CELL = """
import matplotlib.pyplot as plt
from ganlib import viz

def show(alpha, kind):
    print(f"alpha={alpha} kind={kind}")
    plt.plot([0, 1], [0, alpha])
    plt.show()

viz.interactive(show, alpha=(0.0, 1.0, 0.25, 0.5), kind=["line", "dots"])
"""
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
