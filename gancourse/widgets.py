"""Sliders for the notebooks' figures that also work without a widget front-end (CI, static renders): `interactive`
draws a figure for the sliders' start values as an ordinary output, then, with ipywidgets, redraws it in place
when a slider moves.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["interactive"]


def _slider_start(spec):
    """A slider's start value: the fourth entry of ``(low, high, step, start)``, else the first value."""
    if isinstance(spec, tuple) and len(spec) == 4:
        return spec[3]
    return spec[0] if isinstance(spec, (tuple, list)) else spec


def _control(widgets, name: str, spec, start):
    """The widget for one keyword: an int or float slider for ``(low, high, step[, start])``, a dropdown for a
    list, a fixed value otherwise."""
    if isinstance(spec, tuple) and len(spec) >= 3:
        kind = widgets.IntSlider if all(isinstance(v, int) for v in spec[:3]) else widgets.FloatSlider
        return kind(min=spec[0], max=spec[1], step=spec[2], value=start, description=name, continuous_update=False)
    if isinstance(spec, list):
        return widgets.Dropdown(options=spec, value=start, description=name)
    return None


def _rich_outputs(fn: Callable, kwargs: dict) -> list:
    """Run fn(**kwargs) and return what it displayed (its figures, through `plt.show()`, and figures it left
    open), not shown yet."""
    import matplotlib.pyplot as plt
    from IPython.display import display
    from IPython.utils.capture import capture_output

    before = set(plt.get_fignums())
    with capture_output(stdout=False, stderr=False, display=True) as captured:
        fn(**kwargs)
        for num in sorted(set(plt.get_fignums()) - before):  # drawn without plt.show()
            display(plt.figure(num))
            plt.close(num)
    return captured.outputs


def interactive(fn: Callable, **sliders) -> None:
    """Show `fn` with one slider per keyword, e.g. ``interactive(show, alpha=(0.0, 1.0, 0.05))``.

    `fn` draws one picture for the keywords' values and ends with ``plt.show()``. Its picture for the sliders'
    start values (the first value of each range, or the value given as ``(low, high, step, start)``) is always
    drawn as an ordinary output, so the cell has its picture wherever it is shown: in CI, on a static render,
    in a front-end without widget support. Then, with ipywidgets, the sliders are attached below it: moving one
    redraws that same picture in place. Keywords that are neither a range nor a list are passed as they are.
    """
    start = {name: _slider_start(spec) for name, spec in sliders.items()}
    try:
        import ipywidgets as widgets
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        widgets = None
    if widgets is None or get_ipython() is None:
        fn(**start)
        return
    frame = _rich_outputs(fn, start)
    handles = [display(out.data, metadata=out.metadata, raw=True, display_id=True) for out in frame]
    controls = {name: _control(widgets, name, spec, start[name]) for name, spec in sliders.items()}
    live = {name: c for name, c in controls.items() if c is not None}

    def redraw(_change=None):
        values = {**start, **{name: c.value for name, c in live.items()}}
        for handle, out in zip(handles, _rich_outputs(fn, values)):
            handle.update(out.data, metadata=out.metadata, raw=True)

    for c in live.values():
        c.observe(redraw, names="value")
    if live:
        display(widgets.VBox(list(live.values())))
