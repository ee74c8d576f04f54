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


def test_rotation_label_follows_pose_matrix(aflw_faces):
    im, box, pose = aflw_faces.images[1], aflw_faces.boxes[1], aflw_faces.poses[1]
    cfg = AugmentConfig(flip=False, rotate_deg=25, scale_jitter=0, shift_jitter=0, photometric=False)
    rng = np.random.default_rng(3)
    theta = float(np.random.default_rng(3).uniform(-25, 25))
    crop, label = augment.augment_face(im, box, pose, 64, cfg, rng)
    np.testing.assert_allclose(label, angles.rotate_pose_in_plane(pose, theta), atol=1e-4)
    np.testing.assert_array_equal(crop, augment.warp_face(im, box, 64, theta_deg=theta))


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
