#!/usr/bin/env bash
# The whole job on built-in synthetic data, in a fresh folder, using every default a user would:
# ./data, sqlite:///maskopt.db, study "maskopt". Run by `make demo` (after setup).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
maskopt="$root/.venv/bin/maskopt"
dir="${1:-demo}"
# Replaces only an earlier demo (its marker file), never a folder with anything else in it.
marker=".maskopt-demo"
if [ -e "$dir" ] && [ ! -f "$dir/$marker" ] && { [ ! -d "$dir" ] || [ -n "$(ls -A "$dir")" ]; }; then
    echo "demo: $dir holds something no earlier demo wrote; give another folder (make demo DEMO=new-folder) or remove it by hand." >&2
    exit 1
fi
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" && touch "$marker"
start=$(date +%s)

# 900 held-out people (6,300 photos, inference only): enough that the held-out F1's 95%
# interval over people is about +-0.03, narrow enough to tell a good bundle from a poor one.
echo "== 1/5 synthetic data (120 people to search on, 900 held-out people) =="
"$maskopt" synth data --people 120 --eval-people 900 --seed 0
echo "== 2/5 EDA =="
"$maskopt" eda --out eda.html
echo "== 3/5 search: 20 trials, 3 folds, cpu space =="
"$maskopt" search --space cpu --trials 20 --folds 3 --seed 0
echo "== 4/5 best trials -> ensemble bundle =="
"$maskopt" best
"$maskopt" best --export --out bundle
echo "== 5/5 the bundle on the 900 held-out people (macro F1 with its 95% interval) =="
"$maskopt" predict bundle --eval --out eval_predictions.csv

echo
echo "demo done in $(( $(date +%s) - start ))s (setup not counted)."
echo "bundle:    $(pwd)/bundle"
echo "dashboard: (cd $(pwd) && $maskopt dashboard)"
