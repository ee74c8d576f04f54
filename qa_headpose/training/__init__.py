"""Training with TensorFlow: config and presets, model, QAT, augmentation, the training loop, export, run folders.

Keras only through `training._keras`. Imports `inference` (the runner checks exports) and
`datasets`; neither of them imports this package (tests/test_layout.py checks it).
"""
