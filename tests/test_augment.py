import dataclasses

import numpy as np
import pytest

from qa_headpose.core import angles
from qa_headpose.inference.preprocess import crop_face
from qa_headpose.training import augment
from qa_headpose.training.config import AugmentConfig


def test_warp_without_jitter_is_the_crop(aflw_faces):
    diffs = [
        np.abs(augment.warp_face(im, box, 64).astype(int) - crop_face(im, box, 64)).mean()
        for im, box in zip(aflw_faces.images[:8], aflw_faces.boxes[:8])
    ]
    assert max(diffs) < 8 and np.mean(diffs) < 5


def test_flip_mirrors_image_and_label(aflw_faces):
    im, box, pose = aflw_faces.images[0], aflw_faces.boxes[0], aflw_faces.poses[0]
    flipped = augment.warp_face(im, box, 64, flip=True)
    mirrored = augment.warp_face(im, box, 64)[:, ::-1].astype(int)
    assert np.abs(flipped.astype(int) - mirrored).max() <= 1
    cfg = AugmentConfig(flip=True, rotate_deg=0, scale_jitter=0, shift_jitter=0, photometric=False)
    seen = set()
    for seed in range(20):
        crop, label = augment.augment_face(im, box, pose, 64, cfg, np.random.default_rng(seed))
        is_flipped = np.array_equal(crop, flipped)
        np.testing.assert_allclose(label, angles.flip_pose(pose) if is_flipped else pose)
        seen.add(is_flipped)
    assert seen == {True, False}


def test_rotation_turns_pixels_and_label_the_same_way():
    """A generated face with one mark right of its centre, labelled (0, 0, 10): each rotation moves the mark and the
    roll label by the same, independently measured angle.

    By angles.py's convention roll > 0 tilts the head clockwise on screen, so turning the content
    counter-clockwise by theta (the mark rises from 3 o'clock) gives roll 10 - theta, yaw and pitch untouched.
    The angle is read back from the mark's position in the crop, not from the code's own calls.
    """
    image = np.full((200, 200, 3), 40, np.uint8)
    yy, xx = np.mgrid[0:200, 0:200]
    image[(xx - 150) ** 2 + (yy - 100) ** 2 <= 36] = 255  # the mark, 50 px right of the box centre
    box = np.array([70, 70, 130, 130], np.float32)
    cfg = AugmentConfig(flip=False, rotate_deg=30, scale_jitter=0, shift_jitter=0, photometric=False)
    turns = []
    for seed in range(8):
        crop, label = augment.augment_face(image, box, np.array([0, 0, 10]), 64, cfg, np.random.default_rng(seed))
        ys, xs = np.nonzero(crop[..., 0] > 128)
        centre = (64 - 1) / 2
        turned = np.degrees(np.arctan2(centre - ys.mean(), xs.mean() - centre))  # counter-clockwise on screen
        np.testing.assert_allclose(label, [0, 0, 10 - turned], atol=3)
        turns.append(turned)
    assert min(turns) < -5 and max(turns) > 5  # both directions were drawn


def test_augmentation_is_deterministic_and_in_range(aflw_faces):
    from qa_headpose.datasets.faceset import filter_protocol

    aflw_faces, _ = filter_protocol(aflw_faces)
    cfg = AugmentConfig()
    a = [
        augment.augment_face(im, b, p, 48, cfg, np.random.default_rng(7))
        for im, b, p in zip(aflw_faces.images, aflw_faces.boxes, aflw_faces.poses)
    ]
    b = [
        augment.augment_face(im, b, p, 48, cfg, np.random.default_rng(7))
        for im, b, p in zip(aflw_faces.images, aflw_faces.boxes, aflw_faces.poses)
    ]
    for (ca, pa), (cb, pb) in zip(a, b):
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_array_equal(pa, pb)
        assert ca.shape == (48, 48, 3) and ca.dtype == np.uint8
        assert np.all(np.abs(pa) <= 99)


def test_black_border_blacks_out_bands_at_the_sides_only_and_keeps_the_label():
    im, box, pose = _texture(), BOX, np.array([12.5, -30.0, 7.25], np.float32)  # generated: runs under mutmut
    plain = crop_face(im, box, 64)
    cfg = AugmentConfig(flip=False, rotate_deg=0, scale_jitter=0, shift_jitter=0, photometric=False, black_border=1.0)
    widths = []
    for seed in range(30):
        crop, label = augment.augment_face(im, box, pose, 64, cfg, np.random.default_rng(seed))
        np.testing.assert_array_equal(label, pose)
        black_rows, black_cols = (crop == 0).all((1, 2)), (crop == 0).all((0, 2))
        bands = [_leading(black_rows), _leading(black_rows[::-1]), _leading(black_cols), _leading(black_cols[::-1])]
        assert max(bands) < 16  # each band under a quarter of the side: the centre half is never touched
        # The crop itself with black bands along its sides, nothing else changed.
        top, bottom, left, right = bands
        expected = plain.copy()
        expected[:top], expected[64 - bottom :], expected[:, :left], expected[:, 64 - right :] = 0, 0, 0, 0
        np.testing.assert_array_equal(crop, expected)
        widths.append(left + right)
    assert 0 < np.mean(widths) < 32 and len(set(widths)) > 5
    off = AugmentConfig(flip=False, rotate_deg=0, scale_jitter=0, shift_jitter=0, photometric=False)
    np.testing.assert_array_equal(augment.augment_face(im, box, pose, 64, off, np.random.default_rng(0))[0], plain)
    half = AugmentConfig(**{**dataclasses.asdict(cfg), "black_border": 0.5})
    bordered = [
        not np.array_equal(augment.augment_face(im, box, pose, 64, half, np.random.default_rng(s))[0], plain)
        for s in range(40)
    ]
    assert 10 < sum(bordered) < 30  # a probability of 0.5
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(black_border=1.5)


def _leading(flags: np.ndarray) -> int:
    """How many leading entries are True."""
    return int(np.argmin(flags)) if not flags.all() else len(flags)


# ---------------------------------------------------------------- found by mutation testing
# Generated faces (no data needed, so these run inside mutmut's copy of the repository): a textured image, and a
# mark whose position in the crop is measured, not computed with the code's own calls.
def _texture(height: int = 300, width: int = 340) -> np.ndarray:
    """Smooth random texture: every pixel shift shows in the difference."""
    import cv2

    rng = np.random.default_rng(11)
    small = rng.integers(0, 256, (height // 20, width // 20, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _marked(x: float, y: float, height: int = 300, width: int = 340) -> np.ndarray:
    image = np.full((height, width, 3), 40, np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    image[(xx - x) ** 2 + (yy - y) ** 2 <= 16] = 255
    return image


def _mark_at(crop: np.ndarray) -> np.ndarray:
    """(x, y) brightness-weighted centroid of the mark in a crop, pixels."""
    weight = np.clip(crop[..., 0].astype(float) - 40, 0, None)
    yy, xx = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]]
    return np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()


BOX = np.array([130, 100, 210, 190], np.float32)  # 80 x 90; enlarged by 0.6 per side: 176 x 198, inside the image


@pytest.mark.parametrize("size", [48, 160])  # 48: shrunk first (area), 160: warped directly
@pytest.mark.parametrize("theta", [0.0, 25.0, -40.0])
@pytest.mark.parametrize("scale, shift", [(1.0, (0.0, 0.0)), (1.3, (0.1, -0.05)), (0.8, (-0.07, 0.12))])
def test_warp_puts_a_point_where_the_geometry_says(size, theta, scale, shift):
    """A point at offset d from the jittered box centre lands at size/2 + S R(theta) d, R turning counter-clockwise
    on screen (y down), S = diag(size/w, size/h); the flip mirrors it about the crop's middle column."""
    x0, y0, x1, y1 = 130 - 0.6 * 80, 100 - 0.6 * 90, 210 + 0.6 * 80, 190 + 0.6 * 90
    w, h = (x1 - x0) * scale, (y1 - y0) * scale
    cx, cy = (x0 + x1) / 2 + shift[0] * (x1 - x0), (y0 + y1) / 2 + shift[1] * (y1 - y0)
    px, py = cx + 0.22 * w, cy - 0.17 * h
    rad = np.radians(theta)
    dx, dy = px - cx, py - cy
    turned = np.array([dx * np.cos(rad) + dy * np.sin(rad), -dx * np.sin(rad) + dy * np.cos(rad)])
    expected = size / 2 + turned * [size / w, size / h]
    image = _marked(px, py)
    crop = augment.warp_face(image, BOX, size, theta, scale, shift)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    tolerance = 0.6 * max(1.0, size / 64)
    np.testing.assert_allclose(_mark_at(crop), expected, atol=tolerance)
    flipped = augment.warp_face(image, BOX, size, theta, scale, shift, flip=True)
    np.testing.assert_allclose(_mark_at(flipped), [size - 1 - expected[0], expected[1]], atol=tolerance)


@pytest.mark.parametrize("size", [48, 160])
def test_flip_is_the_mirrored_warp_to_the_pixel(size):
    image = _texture()
    for theta, scale, shift in [(0.0, 1.0, (0.0, 0.0)), (17.0, 1.2, (0.05, -0.1))]:
        plain = augment.warp_face(image, BOX, size, theta, scale, shift).astype(int)
        flipped = augment.warp_face(image, BOX, size, theta, scale, shift, flip=True).astype(int)
        assert np.abs(flipped - plain[:, ::-1]).max() <= 1
        assert np.abs(flipped - plain).mean() > 10  # the texture is not symmetric


@pytest.mark.parametrize(
    "box, size, bound",
    [
        ([20, 30, 100, 120], 160, 1.0),  # enlarged box past the top-left corner
        ([250, 200, 330, 290], 160, 1.0),  # past the bottom-right corner
        ([130, 100, 210, 190], 160, 2.5),  # inside
        ([20, 30, 100, 120], 48, 5.0),
        ([250, 200, 330, 290], 48, 5.0),
        ([130, 100, 210, 190], 48, 5.0),
    ],
)
def test_warp_without_jitter_is_the_crop_on_a_generated_face(box, size, bound):
    """The un-jittered warp is the FSA-Net crop, also where the enlarged box is clipped by the image.

    Measured mean |difference|: 0.25 and 0.32 for the clipped boxes at 160 px (3.2 when the clip is at pixel 1,
    not 0), 1.8 inside (crop_face rounds the box outward to whole pixels), 3.3-4.0 at 48 px (bilinear warp vs
    resize); one output pixel of shift gives 3-6 at 160 px and 8-16 at 48 px.
    """
    image = _texture()
    box = np.array(box, np.float32)
    warped = augment.warp_face(image, box, size).astype(int)
    assert np.abs(warped - crop_face(image, box, size)).mean() < bound


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_warp_of_a_box_beside_the_image_repeats_its_edge(side):
    """A box wholly beside the image: the warp uses it unclipped, so the crop repeats the image's edge."""
    image = _texture()
    h, w = image.shape[:2]
    box = {
        "left": [-400, 100, -320, 190],
        "right": [w + 320, 100, w + 400, 190],
        "top": [130, -400, 210, -310],
        "bottom": [130, h + 310, 210, h + 400],
    }[side]
    crop = augment.warp_face(image, np.array(box, np.float32), 48).astype(int)
    axis = 1 if side in ("left", "right") else 0
    assert np.abs(np.diff(crop, axis=axis)).max() == 0  # constant along the direction away from the image
    # Across it, the edge's pixels at the unclipped box's positions: centre + (i - 24) * side / 48, where the
    # enlarged box is 176 x 198 px about (170, 145).
    edge = {"left": image[:, 0], "right": image[:, -1], "top": image[0], "bottom": image[-1]}[side]
    at = 145 + (np.arange(48) - 24) * 198 / 48 if axis == 1 else 170 + (np.arange(48) - 24) * 176 / 48
    expected = np.stack([np.interp(at, np.arange(len(edge)), edge[:, c]) for c in range(3)], axis=1)
    profile = crop[:, 0] if axis == 1 else crop[0]
    assert np.abs(profile - expected).mean() < 8  # measured 1-4 (pre-shrink blur); a wrong box side: 86-97


@pytest.mark.parametrize("axis", [0, 1])
def test_a_box_that_overlaps_the_image_by_two_pixels_is_clipped_to_them(axis):
    """The enlarged box ends exactly 2 px inside the image (x1 = -10 + 0.6 * 20 = 2): those two pixels,
    clipped, fill the crop; a box overlapping by less would be used unclipped (the previous test)."""
    image = np.full((200, 200, 3), 255, np.uint8)
    box = np.array([-30, 60, -10, 140], np.float32)
    if axis == 0:
        image[:, 0] = 0  # column 0 dark, the rest bright
    else:
        image, box = image.transpose(1, 0, 2).copy(), box[[1, 0, 3, 2]]
        image[0] = 0
    crop = augment.warp_face(image, box, 32)
    far = crop[:, 20:] if axis == 0 else crop[20:]
    assert far.min() > 200  # beyond pixel 1: bright (unclipped, most of the crop would repeat the dark edge)


def test_a_large_shrink_averages_instead_of_aliasing():
    """One-pixel stripes warped to a crop 10x smaller come out flat grey: shrunk with area averaging first."""
    image = np.zeros((600, 600, 3), np.uint8)
    image[:, ::2] = 255
    crop = augment.warp_face(image, np.array([200, 200, 400, 400], np.float32), 32).astype(int)
    assert np.abs(crop - 127.5).max() < 12


def test_a_rotation_range_under_one_degree_still_rotates():
    rolls = [
        augment.augment_face(_texture(), BOX, [0, 0, 0], 32, _no_jitter(rotate_deg=0.5), np.random.default_rng(s))[1][2]
        for s in range(10)
    ]
    assert 0 < np.ptp(rolls) <= 1 and np.abs(rolls).max() <= 0.5


def _no_jitter(**changes) -> AugmentConfig:
    fields = dict(flip=False, rotate_deg=0, scale_jitter=0, shift_jitter=0, photometric=False)
    return AugmentConfig(**{**fields, **changes})


def test_rotation_and_flip_together_give_the_composed_label():
    """Rotation then flip, in pixels and labels: the mark's measured angle gives theta, the label is
    flip(rotate(pose, theta)) when the crop is mirrored; a label with yaw and pitch shows the composition."""
    image = _marked(150, 100, 200, 200)
    box = np.array([70, 70, 130, 130], np.float32)
    pose = np.array([30, -20, 10])
    cfg = _no_jitter(flip=True, rotate_deg=30)
    seen = set()
    for seed in range(16):
        crop, label = augment.augment_face(image, box, pose, 64, cfg, np.random.default_rng(seed))
        assert label.dtype == np.float32 and label.shape == (3,)
        x, y = _mark_at(crop)
        flipped = x < 31.5  # the mark starts right of the centre and turns by at most 30 deg
        if flipped:
            x = 63 - x
        turned = np.degrees(np.arctan2(32 - y, x - 32))
        expected = angles.rotate_pose_in_plane(pose, turned)
        np.testing.assert_allclose(label, angles.flip_pose(expected) if flipped else expected, atol=3)
        seen.add((flipped, turned > 0))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_rotation_draws_cover_the_range_and_stay_in_the_protocol():
    image = _texture()
    rolls = [
        augment.augment_face(image, BOX, [0, 0, 0], 32, _no_jitter(rotate_deg=25), np.random.default_rng(s))[1][2]
        for s in range(60)
    ]
    assert -25 <= min(rolls) < -18 and 18 < max(rolls) <= 25  # roll = -theta, theta uniform in +-25
    # Near the +-99 limit, a rotation that would leave it is not applied: label and pixels unrotated.
    plain = crop_face(image, BOX, 32)
    kept = rotated = 0
    for seed in range(40):
        crop, label = augment.augment_face(
            image, BOX, [0, 0, 90], 32, _no_jitter(rotate_deg=25), np.random.default_rng(seed)
        )
        if label[2] == 90:
            np.testing.assert_array_equal(crop, plain)
            kept += 1
        else:
            assert 65 <= label[2] <= 99 and np.abs(crop.astype(int) - plain).mean() > 3
            rotated += 1
    assert kept > 5 and rotated > 5


def test_scale_and_shift_move_pixels_not_labels():
    """Each jitter alone warps the crop (the mark moves or grows) and leaves the label as it was."""
    image = _marked(200, 120)
    plain = crop_face(image, BOX, 64)
    centre = _mark_at(plain)
    pose = np.array([12.5, -7.25, 3.0], np.float32)
    distances, offsets = [], []
    for cfg, out in [(_no_jitter(scale_jitter=0.3), distances), (_no_jitter(shift_jitter=0.1), offsets)]:
        for seed in range(30):
            crop, label = augment.augment_face(image, BOX, pose, 64, cfg, np.random.default_rng(seed))
            np.testing.assert_array_equal(label, pose)
            out.append(_mark_at(crop) - 32 if out is distances else _mark_at(crop) - centre)
    ratio = np.linalg.norm(distances, axis=1) / np.linalg.norm(centre - 32)
    assert 1 / 1.32 < ratio.min() < 0.85 and 1.2 < ratio.max() < 1 / 0.68  # scale in [0.7, 1.3] zooms out/in
    offsets = np.array(offsets) / 64  # shift in box sides: up to 0.1 each way on each axis, in crop units
    assert (np.abs(offsets) < 0.105).all() and (offsets.min(0) < -0.06).all() and (offsets.max(0) > 0.06).all()


def test_photometric_jitter_keeps_the_label_and_an_int_pose_comes_back_float32():
    image = _texture()
    crop, label = augment.augment_face(
        image, BOX, [10, -20, 30], 32, _no_jitter(photometric=True), np.random.default_rng(0)
    )
    assert label.dtype == np.float32
    np.testing.assert_array_equal(label, [10, -20, 30])
    assert np.abs(crop.astype(int) - crop_face(image, BOX, 32)).mean() > 1
    crop, label = augment.augment_face(image, BOX, [10, -20, 30], 32, _no_jitter(), np.random.default_rng(0))
    assert label.dtype == np.float32
    np.testing.assert_array_equal(crop, crop_face(image, BOX, 32))
