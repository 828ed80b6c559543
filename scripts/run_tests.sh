#!/usr/bin/env bash
# Host tests, then the OpenXR tests inside the Monado environment. pytest's exit code 5
# ("no tests collected") is a failure here: an empty run proves nothing. The XR tests run under the
# Khronos core validation layer (scripts/monado_env.sh enables it); any VALID_ERROR fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
status=0
$PY -m pytest -q -m "not xr" tests "$@" || status=$?
if [ $status -eq 5 ]; then echo "pytest collected no host tests" >&2; exit 1; fi
[ $status -ne 0 ] && exit $status
if [ -x scripts/monado_env.sh ]; then
  bash scripts/monado_env.sh ensure || exit 1
  $PY scripts/prepare_xr_assets.py .xr-assets || exit 1
  bash scripts/monado_env.sh run $PY -m pytest -q -m xr tests "$@"; status=$?
  if [ $status -eq 5 ]; then echo "pytest collected no XR tests" >&2; exit 1; fi
fi
exit $status
