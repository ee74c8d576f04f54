#!/usr/bin/env bash
# The extra-faces comparison of docs/extra_faces.md: first-round students of the teacher (weights/teacher_v1)
# with no extra faces, AFLW's own labels, the teacher's pseudo-labels, or both; about the same number of float
# and QAT steps each, so only the data differs. Val split only.
#   bash tools/extra_grid.sh runs/grid_extra 64     # 64x64: ~1,360 float + ~340-470 QAT steps (the fast recipe)
#   bash tools/extra_grid.sh runs/grid_extra128 128 # 128x128: ~1,040 float + ~340-470 QAT steps (the accurate recipe)
# Run from the repository root after: qa-headpose data pseudo-label ../shared/data/AFLW_extra \
#   --out runs/pseudo/aflw_extra_teacher_v1.csv --teacher weights/teacher_v1/headpose_float32.tflite \
#   weights/teacher_v1/headpose_int8.tflite
# ONLY="none both" runs only those rows.
set -euo pipefail
out=${1:-runs/grid_extra}
size=${2:-64}
v1=runs/pseudo/aflw_extra_teacher_v1.csv
# The round-1 student recipe, spelled out (the presets have moved on since): from the teacher's float weights,
# batch 64, no black bands; the extra faces with the labelled ones x4 and the teacher's least sure faces left out.
common=(--data ../shared/data/AFLW2000 --input-size "$size" --batch-size 64 --qat-learning-rate 3e-5
  --init-weights weights/teacher_v1/headpose_float.weights.h5 --quiet)
with_extra=(--extra ../shared/data/AFLW_extra --labelled-repeat 4 --max-mirror-deg 8 --max-gt-yaw-gap-deg 25)
if [ "$size" = 64 ]; then
  common+=(--learning-rate 5e-4)
  epochs=(none 76 19 aflw 7 2 pseudo 4 1 both 3 1)
elif [ "$size" = 128 ]; then
  common+=(--learning-rate 3e-4)
  epochs=(none 58 19 aflw 5 2 pseudo 3 1 both 2 1)
else
  echo "error: the size must be 64 or 128, got $size" >&2
  exit 2
fi
declare -A extra=([none]="" [aflw]="--extra-labels aflw" [pseudo]="--extra-labels pseudo --pseudo-labels $v1"
  [both]="--extra-labels both --pseudo-labels $v1")
for ((i = 0; i < ${#epochs[@]}; i += 3)); do
  run=${epochs[i]}
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $run "* ]]; then continue; fi
  rows=("${common[@]}")
  if [ "$run" != none ]; then rows+=("${with_extra[@]}"); fi
  # shellcheck disable=SC2086
  qa-headpose train "${rows[@]}" --out "$out/$run" ${extra[$run]} --epochs "${epochs[i + 1]}" \
    --qat-epochs "${epochs[i + 2]}"
  qa-headpose export "$out/$run" --out "$out/$run/models" --variants int8 --force
  qa-headpose evaluate "$out/$run/models/headpose_int8.tflite" --data ../shared/data/AFLW2000 --subset val \
    --json "$out/$run/val_int8.json" --force
done
