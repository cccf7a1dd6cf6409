#!/usr/bin/env bash
# Installs covseg on a GPU machine that has no internet but has torch (with CUDA) and most of
# covseg's needs: the modules that are missing come from Python 3.12 wheels carried in .wheels/
# (git-ignored), covseg itself is installed editable without its dependencies.
#
#   bash benchmarks/gpu_setup.sh              # on the GPU machine: install (again: nothing to do)
#   bash benchmarks/gpu_setup.sh --download   # where pip reaches PyPI: fetch the wheels into .wheels/
#
# Then: bash benchmarks/gpu_check.sh. It prints what it installed and a table of every module covseg
# imports with its version; it exits 1 when one is still missing (naming it). PYTHON picks the
# interpreter (default python3); COVSEG_WHEELS the wheel folder (default .wheels).
#
# The carried wheels (pure Python or cp312 manylinux; about 11 MB): what the GPU image lacks of
# covseg's run-time needs, with their own needs. Versions are the ones covseg's tests ran with.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${COVSEG_WHEELS:-.wheels}
CARRIED=(
    nibabel==5.4.2            # NIfTI reading (needs numpy, packaging)
    albumentations==2.0.8     # augmentation (needs numpy, scipy, PyYAML, pydantic, albucore, OpenCV)
    albucore==0.0.24          # albumentations' kernels (needs stringzilla, simsimd, OpenCV)
    stringzilla==5.3.2
    simsimd==6.5.16
    pydantic==2.14.4          # albumentations' settings (needs the next four)
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0 # pydantic needs >= 4.16; older images have less
)
# Module -> distribution for every third-party module covseg imports at run time.
MODULES="torch:torch torchvision:torchvision timm:timm pluggy:pluggy typer:typer rich:rich numpy:numpy
PIL:pillow nibabel:nibabel albumentations:albumentations cv2:opencv-python-headless onnx:onnx
onnxruntime:onnxruntime matplotlib:matplotlib yaml:pyyaml scipy:scipy pydantic:pydantic"

if [[ "${1:-}" == "--download" ]]; then
    mkdir -p "$WHEELS"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$WHEELS" "${CARRIED[@]}"
    echo "gpu_setup: $(ls "$WHEELS"/*.whl | wc -l) wheels in $WHEELS ($(du -sh "$WHEELS" | cut -f1))"
    exit 0
fi

missing() {  # the distributions whose module does not import
    "$PYTHON" - "$MODULES" <<'EOF'
import importlib.util, sys
for pair in sys.argv[1].split():
    module, distribution = pair.split(":")
    if importlib.util.find_spec(module) is None:
        print(distribution)
EOF
}

echo "gpu_setup: $("$PYTHON" --version) at $(command -v "$PYTHON")"
need=$(missing)
carried=()
for distribution in $need; do
    if ls "$WHEELS"/"${distribution//-/_}"-*.whl >/dev/null 2>&1; then
        carried+=("$distribution")
    fi
done
if (( ${#carried[@]} )); then
    echo "gpu_setup: installing from $WHEELS: ${carried[*]} (and what they need)"
    "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" "${carried[@]}" 2>&1 \
        | grep -v "^WARNING: Location" || true
else
    echo "gpu_setup: every carried module is already installed"
fi

here=$(pwd -P)
installed=$("$PYTHON" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("covseg")
print(pathlib.Path(spec.origin).resolve().parents[2] if spec and spec.origin else "")
EOF
)
if [[ "$installed" == "$here" ]]; then
    echo "gpu_setup: covseg is installed from $here"
else
    echo "gpu_setup: installing covseg from $here (editable, no dependencies)"
    "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
fi

"$PYTHON" - "$MODULES" <<'EOF'
import importlib.metadata as metadata, importlib.util, sys
missing = []
for pair in sys.argv[1].split() + ["covseg:covseg"]:
    module, distribution = pair.split(":")
    if importlib.util.find_spec(module) is None:
        missing.append(distribution)
        version = "MISSING"
    else:
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:  # e.g. onnxruntime-gpu provides onnxruntime
            version = "installed"
    print(f"  {module:<15} {version}")
if missing:
    print(f"error: still missing: {', '.join(missing)}; carry their wheels in .wheels/", file=sys.stderr)
    sys.exit(1)
print("gpu_setup: ready")
EOF
