#!/usr/bin/env bash
# Installs the Debian packages the tests need: the Python side of the toolchain and the
# Fashion-MNIST data (PyPI is not reachable from our machines), and Chromium for the page's
# browser test (Playwright's own browser download does not work here either).
# Idempotent: packages already present are left alone.
set -euo pipefail

packages=(python3-torch python3-torchvision python3-onnx python3-numpy python3-pytest python3-matplotlib python3-grpcio python3-grpc-tools dataset-fashion-mnist chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  echo "setup-debian: installing ${missing[*]}"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

/usr/bin/python3 -c 'import torch, torchvision, onnx, numpy, grpc, grpc_tools; print(f"setup-debian: torch {torch.__version__}, torchvision {torchvision.__version__}, onnx {onnx.__version__}")'
