"""The baked colour chain: one Color3DLUT per slide, applied through its expanded table."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pathology.colour import bake
from pathology.cube import parse_cube
from tests import slide_factory as factory


def _random_image(seed: int = 6) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))


def test_expanded_table_agrees_with_pillows_filter() -> None:
    cube = parse_cube(factory.cube_text(
        17, lambda r, g, b: (0.8 * r + 0.2 * g * b, g**1.5, 1 - b), title="curvy").encode())
    table = bake(cube, None)
    assert table is not None
    image = _random_image()
    ours = np.asarray(table.apply(image)).astype(int)
    pillow = np.asarray(image.filter(table.lut)).astype(int)
    assert np.abs(ours - pillow).max() <= 2
    assert np.abs(ours - pillow).mean() < 0.6


def test_chains_that_change_nothing_bake_to_none() -> None:
    identity = parse_cube(factory.identity_cube(9).encode())
    assert bake(identity, None) is None
    assert bake(None, factory.srgb_profile()) is None
    assert bake(identity, factory.srgb_profile()) is None
    assert bake(None, None) is None


def test_an_unusable_icc_profile_is_ignored_not_fatal() -> None:
    assert bake(None, b"not an ICC profile at all") is None
    swap = parse_cube(factory.swap_red_blue_cube(5).encode())
    table = bake(swap, b"garbage")
    assert table is not None
    pixel = Image.new("RGB", (1, 1), (200, 100, 20))
    assert np.abs(np.asarray(table.apply(pixel))[0, 0].astype(int) - (20, 100, 200)).max() <= 1
