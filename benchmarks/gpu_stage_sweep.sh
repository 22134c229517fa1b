#!/usr/bin/env bash
# Here (a machine with pip access): stage, in .whl/, what `hybridlab sweep` needs on the offline GPU machine
# (Python 3.12, torch 2.11 and its image's packages; see /work/.library/device/KINDS.md) beside fla and
# omegaconf: ray[tune] 2.60.0 repacked without its Java jar, dashboard build and rllib/serve/llm
# (benchmarks/repack_ray.py, 79 -> 37 MB), optuna 5.0.0, mlflow-skinny 3.17.2 (the tracking client and sqlite
# store; `hybridlab ui` needs the full mlflow and does not run there) and the dependencies that image lacks.
# About 58 MB with fla and omegaconf: carry [".whl"] and run benchmarks/gpu_sweep.sh. mamba_ssm (38 MB) does not
# fit beside it, so the GPU sweep's layouts (sweeps/configs/gpu_pack.yaml) have no Mamba layers.
set -euo pipefail
PY=${PY:-python3}
DEST=.whl  # where ../shared/gpu/stage.sh puts its wheels too
mkdir -p "$DEST"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '.whl/' .gitignore || echo '/.whl/' >> .git/info/exclude
rm -f "$DEST"/mamba_ssm-* "$DEST"/causal_conv1d-*  # no room beside the sweep stack
../shared/gpu/stage.sh fla omegaconf
WHEELS="alembic==1.20.1 annotated-types==0.8.0 cachetools==7.3.3 cffi==2.1.1 colorlog==6.12.0 cryptography==50.0.2
databricks-sdk==0.162.0 fastapi==0.165.0 gitdb==4.0.12 gitpython==3.2.1 google-auth==2.63.0 importlib-metadata==9.1.0
jsonschema==4.26.0 jsonschema-specifications==2025.9.1 mako==1.4.3 mlflow-skinny==3.17.2 opentelemetry-api==1.45.2
opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2 optuna==5.0.0
pyasn1==0.6.5 pyasn1-modules==0.4.2 pycparser==3.12 pydantic==2.14.4 pydantic-core==2.50.5 python-dotenv==1.2.4
referencing==0.37.0 rpds-py==2026.9.1 smmap==5.0.3 sqlalchemy==2.1.9 sqlparse==0.6.1 starlette==1.10.0
tensorboardx==2.6.5 typing-inspection==0.4.5 uvicorn==0.54.0"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS -d "$DEST" $WHEELS
tmp=$(mktemp -d)
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS -d "$tmp" ray==2.60.0
$PY benchmarks/repack_ray.py "$tmp"/ray-2.60.0-*.whl "$DEST/$(basename "$tmp"/ray-2.60.0-*.whl)"
rm -rf "$tmp"
du -sh "$DEST"
