#!/usr/bin/env bash
# Runs on the GPU machine (no Rust there): the GPU tests and benchmarks from binaries built
# here. scripts/gpu/pack.sh fills .dev/ (git-ignored) with what this needs; docs/GPU.md says
# how a run is made. Usage: scripts/gpu/device.sh STAGE... with stages:
#   tests   the GPU test binary (zoo parity, leak, device errors; SmolLM2/Gemma when present)
#   test:FILTER   the GPU tests whose names contain FILTER
#   tests-mmvqs   the same with RF_GPU_MMVQB=0 (the sliced products instead of the whole-block ones)
#   synth   random-weight models of benchmark shapes into /tmp/rfm (needs .dev/whl/gguf): the
#           SmolLM2 shape in Q4_1, the 8B shape in Q4_0 and Q4_K (RF_SYNTH="shape:type ..."
#           picks others)
#   bench   rocmforge bench on the synthetic models (and SmolLM2 when present) on the GPU
#   bench-nographs   the same generation with RF_GPU_GRAPHS=0
#   bench-ab generation (tg128) of .dev/rocmforge-old and .dev/rocmforge, alternating, on the
#           synthetic models: a change's effect on one machine
#   ab:VAR   a switch's effect on one machine: pp512 and tg128 of the synthetic models with
#           the environment variable VAR (RF_GPU_MMQ, RF_GPU_FMAD, ...) 0 and 1, alternating
#   bench-depth   generation (tg128) after RF_DEPTH (default 1024) cached tokens
#   ab-depth:VAR   the same for generation (tg128) after RF_DEPTH (default 1024) cached
#           tokens (bench -d): decode attention over a long context
#   ab-engine:VAR   the same for the engine (64 and 128 sequences, -p 128 -n 128; RF_AB_PAR
#           picks others)
#   bench-mmvqb   generation (tg128) with RF_GPU_MMVQB=0 and =1, alternating, on the
#           synthetic models
#   bench-q4k   generation (tg128) of the 8B shape in Q4_K, RF_GPU_MMVQK=0 and =1 alternating
#   bench-engine   the continuous-batching engine with 16, 64 and 128 requests generating
#           together (-p 128 -n 128, as llama-batched-bench's rows in bench-gpu.md), on the
#           SmolLM2 shape (Q4_1) and an 8B shape in Q4_K (made here when missing)
#   engine-timing   the engine (64 and 128 sequences, -p 128 -n 128) with RF_GPU_TIMING=1: a
#           decode's wall time by phase (tables, launches, GPU wait, logits download)
#   kernels-engine-late   time per kernel and grid of two generation steps late in that run
#           (128 sequences, the cache about 230 cells long), per step
#   kernels-pp   time per kernel and grid over a 512-token prefill of the 8B shape
#   kernels-engine   time per kernel and grid while the engine decodes 128 sequences
#   stash   adds the model part a run carries (scripts/gpu/parts.sh); the last one
#           completes the model under /tmp/rfm
#   mmvq    the decode-product microbenchmark (scripts/gpu/mmvq_bench.cu, built there by nvcc)
# Logs go to $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/rf-out}
mkdir -p "$OUT" /tmp/rfm
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
# What a run brings is copied under /tmp, which lasts while the machine stays warm: a later
# run may carry only a model part.
B=/tmp/rfbin
mkdir -p $B/zoo
if [ -x .dev/gpu ]; then
  cp .dev/gpu .dev/rocmforge .dev/synth_gguf.py $B/ && cp -r .dev/whl $B/ && cp .dev/zoo/*.gguf $B/zoo/
  # An earlier build to compare with, when one is carried (bench-ab).
  if [ -x .dev/rocmforge-old ]; then cp .dev/rocmforge-old $B/; fi
fi
export RF_ZOO_DIR=$B/zoo RF_MODELS_DIR=/tmp/rfm PYTHONUNBUFFERED=1 RF_REQUIRE_GPU=1
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader
for stage in "$@"; do
  echo "=== $stage"
  case $stage in
    tests)
      $B/gpu --test-threads 1 --nocapture 2>&1 | tee "$OUT/gpu-tests.log" | grep -a -v "^  greedy\|^ *gpu \[\|^| llama\|^| qwen\|^| phi" | tail -60 ;;
    test:*)
      $B/gpu --test-threads 1 --nocapture "${stage#test:}" 2>&1 | tee -a "$OUT/gpu-tests.log" | tail -30 ;;
    bench-depth)
      models=$(ls /tmp/rfm/synth-*.gguf | paste -sd,)
      $B/rocmforge bench -m "$models" -p 0 -n 128 -d "${RF_DEPTH:-1024}" -r 3 --backend cuda 2>&1 \
        | grep -a "tg128" | tee -a "$OUT/bench-depth.md" ;;
    tests-mmvqs)
      RF_GPU_MMVQB=0 $B/gpu --test-threads 1 --nocapture 2>&1 | tee "$OUT/gpu-tests-mmvqs.log" | grep -a -v "^  greedy\|^ *gpu \[\|^| llama\|^| qwen\|^| phi" | tail -40 ;;
    bench-mmvqb)
      models=$(ls /tmp/rfm/*.gguf | paste -sd,)
      for round in 1 2; do
        for on in 0 1; do
          echo "--- RF_GPU_MMVQB=$on (round $round)"
          RF_GPU_MMVQB=$on $B/rocmforge bench -m "$models" -p 0 -n 128 -r 3 --backend cuda 2>&1 | grep -a "tg128" | tee -a "$OUT/bench-mmvqb.md"
        done
      done ;;
    realtests)
      $B/gpu --test-threads 1 --nocapture matches_the_cpu --skip zoo 2>&1 | tee "$OUT/gpu-real.log" | tail -30 ;;
    synth)
      python3 -m pip install -q --no-index --no-deps --target /tmp/site $B/whl/*.whl && export PYTHONPATH=/tmp/site
      for spec in ${RF_SYNTH:-smollm2-135m:Q4_1 llama3-8b:Q4_0 llama3-8b:Q4_K}; do
        set -- ${spec/:/ }
        f=/tmp/rfm/synth-$1-$2.gguf
        [ -f "$f" ] || { t=$(date +%s); python3 $B/synth_gguf.py "$f" --shape "$1" --type "$2" >/dev/null && echo "made $f in $(( $(date +%s) - t )) s"; }
      done ;;
    bench)
      models=$(ls /tmp/rfm/*.gguf | paste -sd,)
      $B/rocmforge bench -m "$models" -p 512 -n 128 -r 3 --backend cuda 2>&1 | tee "$OUT/bench-gpu.md" ;;
    bench-ab)
      models=$(ls /tmp/rfm/*.gguf | paste -sd,)
      for round in 1 2; do
        for b in rocmforge-old rocmforge; do
          echo "--- $b (round $round)"
          $B/$b bench -m "$models" -p 0 -n 128 -r 3 --backend cuda 2>&1 | grep -a "tg128\|model" | tee -a "$OUT/bench-ab.md"
        done
      done ;;
    ab:*)
      var=${stage#ab:}
      models=$(ls /tmp/rfm/*.gguf | paste -sd,)
      for round in 1 2; do
        for on in 0 1; do
          echo "--- $var=$on (round $round)"
          env "$var=$on" $B/rocmforge bench -m "$models" -p 512 -n 128 -r 3 --backend cuda 2>&1 \
            | grep -a "pp512\|tg128" | tee -a "$OUT/ab-$var.md"
        done
      done ;;
    ab-depth:*)
      var=${stage#ab-depth:}
      models=$(ls /tmp/rfm/*.gguf | paste -sd,)
      for round in 1 2; do
        for on in 0 1; do
          echo "--- $var=$on (round $round)"
          env "$var=$on" $B/rocmforge bench -m "$models" -p 0 -n 128 -d "${RF_DEPTH:-1024}" -r 3 \
            --backend cuda 2>&1 | grep -a "tg128" | tee -a "$OUT/ab-depth-$var.md"
        done
      done ;;
    ab-engine:*)
      var=${stage#ab-engine:}
      for m in /tmp/rfm/synth-*.gguf; do
        for par in ${RF_AB_PAR:-64 128}; do
          for on in 0 1; do
            echo "--- $(basename "$m") parallel $par $var=$on"
            env "$var=$on" $B/rocmforge bench-engine -m "$m" --backend cuda --requests "$par" \
              --parallel "$par" --serial 0 -p 128 -n 128 2>&1 | tail -3 | tee -a "$OUT/ab-engine-$var.md"
          done
        done
      done ;;
    bench-engine)
      python3 -m pip install -q --no-index --no-deps --target /tmp/site $B/whl/*.whl && export PYTHONPATH=/tmp/site
      f=/tmp/rfm/synth-llama3-8b-Q4_K.gguf
      [ -f "$f" ] || python3 $B/synth_gguf.py "$f" --shape llama3-8b --type Q4_K >/dev/null
      for m in /tmp/rfm/synth-smollm2-135m-Q4_1.gguf "$f"; do
        for par in 16 64 128; do
          echo "--- $(basename "$m") parallel $par"
          $B/rocmforge bench-engine -m "$m" --backend cuda --requests "$par" --parallel "$par" \
            --serial 0 -p 128 -n 128 2>&1 | tail -5 | tee -a "$OUT/bench-engine.md"
        done
      done ;;
    bench-q4k)
      # Generation (tg128) on the 8B shape in Q4_K with the Q8_K integer-dot products off and
      # on, alternating (the model is made here when missing).
      python3 -m pip install -q --no-index --no-deps --target /tmp/site $B/whl/*.whl && export PYTHONPATH=/tmp/site
      f=/tmp/rfm/synth-llama3-8b-Q4_K.gguf
      [ -f "$f" ] || python3 $B/synth_gguf.py "$f" --shape llama3-8b --type Q4_K >/dev/null
      for round in 1 2; do
        for on in 0 1; do
          echo "--- RF_GPU_MMVQK=$on (round $round)"
          RF_GPU_MMVQK=$on $B/rocmforge bench -m "$f" -p 0 -n 128 -r 3 --backend cuda 2>&1 | grep -a "tg128" | tee -a "$OUT/bench-q4k.md"
        done
      done ;;
    bench-nographs)
      # The same generation without recorded decode graphs: what the graphs save.
      models=$(ls /tmp/rfm/*.gguf | paste -sd,)
      RF_GPU_GRAPHS=0 $B/rocmforge bench -m "$models" -p 0 -n 128 -r 3 --backend cuda 2>&1 | tee "$OUT/bench-nographs.md" ;;
    mmvq)
      nvcc -arch=sm_90 -O3 -std=c++17 -o /tmp/mmvq_bench scripts/gpu/mmvq_bench.cu 2>&1 | grep -v "^$" | head -20
      /tmp/mmvq_bench 2>&1 | tee "$OUT/mmvq.txt" ;;
    stash)
      # A model too big for one run travels in parts over successive runs
      # (scripts/gpu/parts.sh): each run adds what it carries to /tmp/rfm/parts, which lasts
      # while the machine stays warm; with the last part the model is put together under
      # /tmp/rfm and its sha256 checked.
      mkdir -p /tmp/rfm/parts
      for f in .dev/part/* .parts*/*; do
        [ -f "$f" ] && cp "$f" /tmp/rfm/parts/
      done
      for c in /tmp/rfm/parts/*.count; do
        [ -f "$c" ] || continue
        name=$(basename "$c" .count)
        n=$(cat "$c")
        have=$(ls /tmp/rfm/parts/"$name".[0-9]* 2>/dev/null | wc -l)
        echo "$name: $have of $n parts"
        if [ "$have" -eq "$n" ] && [ ! -f "/tmp/rfm/$name" ]; then
          for i in $(seq 1 "$n"); do cat "/tmp/rfm/parts/$name.$i"; done > "/tmp/rfm/$name"
          (cd /tmp/rfm && sha256sum -c "parts/$name.sha256") || rm -f "/tmp/rfm/$name"
        fi
      done ;;
    profile)
      # Nsight Compute on a few decode steps of the 8B-shaped model: the matrix-vector
      # kernel's throughput against the memory roofline.
      ncu --clock-control none -k regex:mmvq?1_ -c 6 --section SpeedOfLight --section MemoryWorkloadAnalysis \
        --section LaunchStats --section Occupancy \
        $B/rocmforge bench -m /tmp/rfm/synth-llama3-8b-Q4_0.gguf -p 0 -n 2 -r 1 --backend cuda 2>&1 |
        tee "$OUT/ncu.txt" | grep -E "mmv|Throughput|Duration|Registers|Achieved Occupancy|Theoretical Occupancy|Block Limit|L1/TEX Hit|Mem Busy|Max Bandwidth|Waves" | head -90 ;;
    kernels)
      # Time per kernel over the decodes of short synthetic runs (Nsight Compute, real
      # clocks): name, launches, total and mean microseconds, largest first.
      for m in llama3-8b-Q4_0 smollm2-135m-Q4_1; do
      echo "--- $m"
      ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        $B/rocmforge bench -m /tmp/rfm/synth-$m.gguf -p 0 -n 4 -r 1 --backend cuda \
        > "$OUT/ncu-$m.csv" 2>/dev/null
      python3 - "$OUT/ncu-$m.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; rows = rows[1:]
k, v = head.index("Kernel Name"), head.index("Metric Value")
t = collections.defaultdict(lambda: [0, 0.0])
for r in rows:
    e = t[r[k].split("(")[0]]; e[0] += 1; e[1] += float(r[v].replace(",", "")) / 1000
total = sum(e[1] for e in t.values())
print(f"{len(rows)} launches, {total:.0f} us")
for name, (n, us) in sorted(t.items(), key=lambda x: -x[1][1]):
    print(f"{name:28s} {n:6d} {us:10.1f} {us / n:8.2f}")
PY
      done ;;
    engine-timing)
      for m in ${RF_ENGINE_MODELS:-smollm2-135m-Q4_1 llama3-8b-Q4_K}; do
        for par in 64 128; do
          echo "--- $m parallel $par"
          RF_GPU_TIMING=1 $B/rocmforge bench-engine -m /tmp/rfm/synth-$m.gguf --backend cuda \
            --requests "$par" --parallel "$par" --serial 0 -p 128 -n 128 2>&1 | tail -4 | tee -a "$OUT/engine-timing.md"
        done
      done ;;
    kernels-engine-late)
      # 128 sequences of -p 128 -n 128 are about 164 steps; the launches of the first 150
      # steps are skipped (about 75,000 launches; RF_SKIP_LAUNCHES overrides the count).
      for m in ${RF_ENGINE_MODELS:-smollm2-135m-Q4_1 llama3-8b-Q4_K}; do
        echo "--- $m"
        ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
          --launch-skip "${RF_SKIP_LAUNCHES:-75000}" --launch-count 1400 \
          $B/rocmforge bench-engine -m /tmp/rfm/synth-$m.gguf --backend cuda --requests 128 \
          --parallel 128 --serial 0 -p 128 -n 128 > "$OUT/ncu-late-$m.csv" 2>/dev/null
        python3 scripts/gpu/ncu_steps.py "$OUT/ncu-late-$m.csv"
      done ;;
    kernels-pp)
      # Time per kernel and grid over a 512-token prefill of the 8B shape (Nsight Compute).
      ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        $B/rocmforge bench -m /tmp/rfm/synth-llama3-8b-Q4_0.gguf -p 512 -n 0 -r 1 --backend cuda \
        > "$OUT/ncu-pp512.csv" 2>/dev/null
      python3 scripts/gpu/ncu_sum.py "$OUT/ncu-pp512.csv" ;;
    kernels-engine)
      # Time per kernel (Nsight Compute) while the engine decodes 128 sequences together
      # (short prompts and few tokens, to keep the launch count down), grouped by kernel and
      # grid: the batched decode's products against everything else.
      f=/tmp/rfm/synth-llama3-8b-Q4_K.gguf
      [ -f "$f" ] || python3 $B/synth_gguf.py "$f" --shape llama3-8b --type Q4_K >/dev/null
      for m in ${RF_ENGINE_MODELS:-smollm2-135m-Q4_1 llama3-8b-Q4_K}; do
      echo "--- $m"
      ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        $B/rocmforge bench-engine -m /tmp/rfm/synth-$m.gguf --backend cuda --requests 128 \
        --parallel 128 --serial 0 -p 16 -n 6 > "$OUT/ncu-engine-$m.csv" 2>/dev/null
      python3 scripts/gpu/ncu_sum.py "$OUT/ncu-engine-$m.csv"
      done ;;
    *) echo "unknown stage $stage" ;;
  esac
done
