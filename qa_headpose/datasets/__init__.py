"""Datasets without TensorFlow: readers (.mat folders, FSA-Net .npz, BIWI, AFLW_extra), `FaceSet`, the split, downloads.

`load.load_faces` picks the reader by what a path is. May import `inference` (pseudo-labelling runs the
TFLite runner), never `training` (tests/test_layout.py checks it).
"""
