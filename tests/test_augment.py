import numpy as np

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


def test_black_border_blacks_out_bands_at_the_sides_only_and_keeps_the_label(aflw_faces):
    import pytest

    im, box, pose = aflw_faces.images[2], aflw_faces.boxes[2], aflw_faces.poses[2]
    plain = crop_face(im, box, 64)
    cfg = AugmentConfig(flip=False, rotate_deg=0, scale_jitter=0, shift_jitter=0, photometric=False, black_border=1.0)
    widths = []
    for seed in range(30):
        crop, label = augment.augment_face(im, box, pose, 64, cfg, np.random.default_rng(seed))
        np.testing.assert_array_equal(label, pose.astype(np.float32))
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
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(black_border=1.5)


def _leading(flags: np.ndarray) -> int:
    """How many leading entries are True."""
    return int(np.argmin(flags)) if not flags.all() else len(flags)
