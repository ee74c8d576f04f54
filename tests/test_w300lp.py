"""The real 300W-LP sample in ../shared/data/300W_LP_sample (skipped without it)."""

from __future__ import annotations

import numpy as np
from conftest import W300LP_DIR, require

from qa_headpose.datasets.load import load_faces
from qa_headpose.datasets.mat import load_mat_folder


def test_load_mat_folder_gives_the_readme_angles():
    folder = require(W300LP_DIR)
    faces = load_mat_folder(folder)
    assert faces.names == ["IBUG/IBUG_image_008_1_0"]
    # README: Pose_Para = pitch -7.58, yaw -44.01, roll 3.21 degrees -> (yaw, pitch, roll).
    np.testing.assert_allclose(faces.poses[0], [-44.01, -7.58, 3.21], atol=0.01)
    # The 68-point pt2d box lies inside the loose crop, with context around it.
    crop, box = faces.images[0], faces.boxes[0]
    h, w = crop.shape[:2]
    assert crop.dtype == np.uint8 and crop.ndim == 3
    assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
    assert (box[2] - box[0]) < 0.6 * w
    assert faces.crops(64).shape == (1, 64, 64, 3)
    # load_faces picks the same loader for this folder (it is not a BIWI folder).
    np.testing.assert_array_equal(load_faces(folder).poses, faces.poses)
