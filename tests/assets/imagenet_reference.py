"""Makes tests/assets/imagenet_reference.npz: torchvision MobileNetV2's ImageNet logits on fixed images, with torch.

Run once, in a throwaway venv that has torch (CPU is enough) and numpy, never the project's:

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    python tests/assets/imagenet_reference.py inputs   # project venv: the images (from astronaut.jpg)
    /tmp/torchvenv/bin/python tests/assets/imagenet_reference.py logits PATH/TO/mobilenet_v2-b0353104.pth

The unmarked test in tests/test_imagenet.py ports the same checkpoint to Keras and compares with these logits,
so CI checks the port without torch. torchvision's model is rebuilt here (same module names) so torchvision is
not needed either.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).with_name("imagenet_reference.npz")
INPUT_SIZE = 160  # small file; ImageNet top-5 is still meaningful at 160 px
MEAN_RGB, STD_RGB = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def torch_mobilenet_v2(torch):
    """torchvision's MobileNetV2 (v0.3+), same module names, without torchvision."""
    nn = torch.nn

    class ConvBNReLU(nn.Sequential):
        def __init__(self, cin, cout, kernel=3, stride=1, groups=1):
            pad = (kernel - 1) // 2
            super().__init__(
                nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()
            )

    class InvertedResidual(nn.Module):
        def __init__(self, inp, oup, stride, expand_ratio):
            super().__init__()
            hidden = round(inp * expand_ratio)
            self.use_res_connect = stride == 1 and inp == oup
            layers = [ConvBNReLU(inp, hidden, kernel=1)] if expand_ratio != 1 else []
            layers += [
                ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]  # fmt: skip
            features, inp = [ConvBNReLU(3, 32, stride=2)], 32
            for t, c, n, s in settings:
                for i in range(n):
                    features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                    inp = c
            features.append(ConvBNReLU(inp, 1280, kernel=1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
            return self.classifier(x)

    return MobileNetV2()


def make_inputs() -> np.ndarray:
    """BGR uint8 (3, S, S, 3): the sample photo resized, its face region, and the photo mirrored."""
    import cv2

    image = cv2.imread(str(Path(__file__).resolve().parents[2] / "qa_headpose" / "assets" / "astronaut.jpg"))
    whole = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    face = cv2.resize(image[40:300, 100:360], (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return np.stack([whole, face, np.ascontiguousarray(whole[:, ::-1])])


def torch_logits(pth: str, bgr: np.ndarray) -> np.ndarray:
    """float32 (n, 1000): torchvision's eval forward pass on BGR uint8 images."""
    import torch

    net = torch_mobilenet_v2(torch)
    net.load_state_dict(torch.load(pth, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    rgb = (bgr[..., ::-1].astype(np.float32) / 255.0 - np.array(MEAN_RGB)) / np.array(STD_RGB)
    with torch.no_grad():
        return net(torch.from_numpy(rgb.transpose(0, 3, 1, 2).astype(np.float32))).numpy()


def main(argv: list[str]) -> None:
    if argv[:1] == ["inputs"]:
        np.savez_compressed(REFERENCE, images=make_inputs())
    elif argv[:1] == ["logits"] and len(argv) == 2:
        import torch

        images = np.load(REFERENCE)["images"]
        logits = torch_logits(argv[1], images)
        np.savez_compressed(REFERENCE, images=images, logits=logits, torch_version=np.array(torch.__version__))
        print("top-5:", np.argsort(-logits, axis=1)[:, :5].tolist())
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
