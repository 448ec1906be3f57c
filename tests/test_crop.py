"""crop_square where the square leaves the frame: every side and corner, wholly and partly outside,
at full and at reduced decode, under OpenCV 5's rule that copyMakeBorder refuses an empty source
(OpenCV 4.x let one through, so the old code passed there and crashed under 5.x)."""
import cv2
import numpy as np
import pytest

from dmtrack.data.crop import crop_side, crop_square

H, W = 60, 80
IMAGE = np.random.default_rng(0).integers(1, 256, (H, W, 3), dtype=np.uint8)  # no zero pixel: padding is visible


@pytest.fixture(autouse=True)
def strict_copy_make_border(monkeypatch):
    """OpenCV 5.x's behaviour on every OpenCV: an empty source is an error."""
    real = cv2.copyMakeBorder

    def strict(src, *args, **kwargs):
        assert src.size > 0, "copyMakeBorder given an empty patch (OpenCV 5: !_src.empty())"
        return real(src, *args, **kwargs)
    monkeypatch.setattr(cv2, "copyMakeBorder", strict)


def reference(image, box, factor, out):
    """The crop and padding mask cut from the frame embedded in a zero canvas larger than any crop."""
    x, y, w, h = box
    side = crop_side(box, factor)
    x1, y1 = int(round(x + 0.5 * w - 0.5 * side)), int(round(y + 0.5 * h - 0.5 * side))
    m = 4 * side
    canvas = np.zeros((H + 2 * m, W + 2 * m, 3), np.uint8)
    inside = np.zeros((H + 2 * m, W + 2 * m), np.uint8)
    canvas[m:m + H, m:m + W], inside[m:m + H, m:m + W] = image, 1
    patch = canvas[m + y1:m + y1 + side, m + x1:m + x1 + side]
    pad = 1 - inside[m + y1:m + y1 + side, m + x1:m + x1 + side]
    return (cv2.resize(patch, (out, out), interpolation=cv2.INTER_LINEAR),
            cv2.resize(pad, (out, out), interpolation=cv2.INTER_NEAREST).astype(bool))


# (box centre offset from the frame, as a multiple of the frame size): sides and corners
PLACES = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1),
          "top-left": (-1, -1), "top-right": (1, -1), "bottom-left": (-1, 1), "bottom-right": (1, 1)}


def box_at(place, far):
    """A 10x10 box beyond `place`: far=True puts its crop wholly outside, else the crop overlaps the frame."""
    dx, dy = PLACES[place]
    reach = 60 if far else 5  # the crop (factor 2, side 20) reaches 10 px around the box centre
    cx = W / 2 + dx * (W / 2 + reach) if dx else W / 2
    cy = H / 2 + dy * (H / 2 + reach) if dy else H / 2
    return [cx - 5, cy - 5, 10, 10]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("far", [True, False], ids=["wholly-outside", "partly-outside"])
def test_crops_leaving_the_frame_on_every_side_and_corner(place, far):
    box = box_at(place, far)
    crop, rf, pad = crop_square(IMAGE, box, 2.0, 16)
    want, want_pad = reference(IMAGE, box, 2.0, 16)
    assert crop.shape == (16, 16, 3) and crop.dtype == np.uint8 and rf == 16 / 20
    np.testing.assert_array_equal(pad, want_pad)
    np.testing.assert_array_equal(crop, want)
    assert pad.all() == far and (crop == 0).all() == far  # wholly outside: all padding, all zeros
    assert pad.any() and not (pad.all() and not far)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("far", [True, False], ids=["wholly-outside", "partly-outside"])
def test_reduced_decode_has_the_same_geometry_outside_the_frame(place, far):
    box = box_at(place, far)
    _, rf, pad = crop_square(IMAGE, box, 2.0, 8)
    small = cv2.resize(IMAGE, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    crop, rf2, pad2 = crop_square(small, box, 2.0, 8, scale=2, size=(H, W))
    assert rf2 == rf and np.array_equal(pad2, pad) and crop.shape == (8, 8, 3)
    if far:
        assert (crop == 0).all()


def test_a_crop_far_larger_than_the_frame_pads_every_side():
    crop, _, pad = crop_square(IMAGE, [30, 20, 20, 20], 10.0, 32)  # side 200 around an 80x60 frame
    want, want_pad = reference(IMAGE, [30, 20, 20, 20], 10.0, 32)
    np.testing.assert_array_equal(crop, want)
    np.testing.assert_array_equal(pad, want_pad)
    assert pad[0].all() and pad[-1].all() and pad[:, 0].all() and pad[:, -1].all() and not pad.all()
