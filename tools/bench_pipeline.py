"""Thin script: time the tf.data training pipeline, float/QAT train steps and fit; see qa_headpose.bench.pipeline.

Usage: PYTHONPATH=. python tools/bench_pipeline.py [--data X.npz] [--input-size 64] [--alpha 1.0] [--batch-size 64]
                                                  [--steps 20] [--no-fit] [--json out.json]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from qa_headpose.bench import pipeline as pipeline_bench
from qa_headpose.core.atomic import write_json
from qa_headpose.training.config import ModelConfig


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="FSA-Net .npz or 300W-LP/AFLW2000 folder (default: random 64x64)")
    p.add_argument("--faces", type=int, default=1024, help="random faces when --data is not given")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed train steps per measurement")
    p.add_argument("--pipeline-batches", type=int, default=40)
    p.add_argument("--no-fit", action="store_true", help="skip Model.fit on the real pipeline")
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.data:
        from qa_headpose.datasets.load import load_faces

        faces = load_faces(args.data)
    else:
        faces = pipeline_bench.make_random_faces(args.faces)
    result = pipeline_bench.run_pipeline_bench(
        faces,
        ModelConfig(input_size=args.input_size, alpha=args.alpha),
        args.batch_size,
        steps=args.steps,
        pipeline_batches=args.pipeline_batches,
        fit=not args.no_fit,
    )
    print(pipeline_bench.format_summary(result))
    if args.json:
        write_json(args.json, {"data": str(args.data or f"random {args.faces}"), **result.to_dict()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
