"""The shapes dataset's drawing: each shape covers its area in its colour, at any resolution and rotation."""

import math

import pytest
import torch

from ganlib import shapes


def _one(shape, colour=0, background=0, x=0.5, y=0.5, size=0.25, rotation=0.0):
    return {"shape": torch.tensor([shape]), "colour": torch.tensor([colour]),
            "background": torch.tensor([background]), "x": torch.tensor([x]), "y": torch.tensor([y]),
            "size": torch.tensor([size]), "rotation": torch.tensor([rotation])}


@pytest.mark.parametrize("shape,area", [(0, math.pi), (1, 1.6**2), (2, 3 * math.sqrt(3) / 4 * 1.2**2)])
def test_shapes_render_the_right_area_and_colours(shape, area):
    size = 0.25
    img = shapes.render_shapes(_one(shape, colour=2, background=1, size=size, rotation=0.3), 128).float() / 255
    fg = torch.tensor(shapes.SHAPE_COLOURS["blue"])
    bg = torch.tensor(shapes.SHAPE_BACKGROUNDS["grey"])
    torch.testing.assert_close(img[0, :, 64, 64], fg, atol=0.003, rtol=0)  # the centre is the shape's colour
    torch.testing.assert_close(img[0, :, 2, 2], bg, atol=0.003, rtol=0)  # a corner is the background
    cover = (img[0, 2] - bg[2]) / (fg[2] - bg[2])  # [R, R] share of each pixel inside (blue channel)
    assert abs(cover.mean().item() - area * size**2) < 0.02 * area * size**2


def test_shapes_any_power_of_two_and_rotation():
    for res in (4, 64):
        assert shapes.render_shapes(_one(1), res).shape == (1, 3, res, res)
    square = shapes.render_shapes(_one(1), 32)
    assert torch.equal(square, shapes.render_shapes(_one(1, rotation=math.pi / 2), 32))  # 90 degrees: the same
    assert not torch.equal(square, shapes.render_shapes(_one(1, rotation=math.pi / 4), 32))
    circle = shapes.render_shapes(_one(0), 32)
    assert (circle.int() - shapes.render_shapes(_one(0, rotation=1.0), 32).int()).abs().max() <= 1
