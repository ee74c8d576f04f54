#!/usr/bin/env bash
# The extra-faces comparison of docs/extra_faces.md: 64x64 students of the teacher (weights/teacher_v1)
# with no extra faces, AFLW's own labels, the teacher's pseudo-labels, or both; about the same number
# of float steps (~1,360) and QAT steps (~340-470) each, so only the data differs. Val split only.
# Run from the repository root after: qa-headpose data pseudo-label ../shared/data/AFLW_extra \
#   --out runs/pseudo/aflw_extra_teacher_v1.csv
set -euo pipefail
out=${1:-runs/grid_extra}
common=(--preset fast --quiet)
qa-headpose train "${common[@]}" --out "$out/none" --no-extra --epochs 76 --qat-epochs 19
qa-headpose train "${common[@]}" --out "$out/aflw" --extra-labels aflw --epochs 7 --qat-epochs 2
qa-headpose train "${common[@]}" --out "$out/pseudo" --epochs 4 --qat-epochs 1
qa-headpose train "${common[@]}" --out "$out/both" --extra-labels both --epochs 3 --qat-epochs 1
for run in none aflw pseudo both; do
  qa-headpose export "$out/$run" --out "$out/$run/models" --variants int8 --force
  qa-headpose evaluate "$out/$run/models/headpose_int8.tflite" --data ../shared/data/AFLW2000 --subset val \
    --json "$out/$run/val_int8.json" --force
done
