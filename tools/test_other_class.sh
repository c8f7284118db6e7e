#!/usr/bin/env bash
# The precision- and ISA-sensitive tests once more, as the CPU class this machine is not
# (`make test-other-class`; .ci/run runs it after `make test`). docs/notebooks.md, "CPU classes".
#   - a CPU with native bf16 (AVX512-BF16 / AMX): run.precision=auto trains in bf16 here, so the
#     bench, DDP, engine resume/accumulation and hardware tests and nbval run again with torch and
#     oneDNN capped at AVX2 (the AVX2 class: auto picks fp32, other kernels, other summation order);
#   - a CPU without it: auto trains in fp32 here, so nbval runs again with the notebooks' SMOKE
#     runs in bf16 (PLAML_SMOKE_PRECISION=bf16, emulated, slow but 6 steps), and the tests with a
#     bf16 path (-k bf16).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NBVAL=(-p no:cacheprovider --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks)
SENSITIVE=(tests/test_bench.py tests/test_ddp.py tests/test_hardware.py tests/test_engine.py)

if "$PY" -c 'import sys; from plaml_lab.hardware import cpu_has_native_bf16 as f; sys.exit(0 if f() else 1)'; then
  echo "this CPU has native bf16: the sensitive tests and nbval as an AVX2 CPU"
  export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
  "$PY" -c 'import sys; from plaml_lab.hardware import cpu_has_native_bf16 as f, cpu_capability as c; print("as:", c(), "native bf16:", f()); sys.exit(1 if f() else 0)'
  "$PY" -m pytest -q "${SENSITIVE[@]}" -k "not engine or resume or accumulation or precision"
  CI=${CI:-true} "$PY" -m pytest -q "${NBVAL[@]}"
else
  echo "this CPU has no native bf16: nbval with the SMOKE runs in bf16, and the bf16 tests"
  "$PY" -m pytest -q "${SENSITIVE[@]}" -k bf16
  PLAML_SMOKE_PRECISION=bf16 CI=${CI:-true} "$PY" -m pytest -q "${NBVAL[@]}"
fi
