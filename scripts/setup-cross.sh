#!/usr/bin/env bash
# Install the Debian cross compilers and qemu-user that `egret build` and
# tests/c_backend.rs use for the C backend's targets:
#
#   aarch64-linux-gnu      gcc-aarch64-linux-gnu    qemu-aarch64
#   armv7-linux-gnueabihf  gcc-arm-linux-gnueabihf  qemu-arm
#   riscv64-linux-gnu      gcc-riscv64-linux-gnu    qemu-riscv64
#   cortex-m4              gcc-arm-none-eabi        (compile only)
#
# Idempotent: does nothing when every tool is already on PATH. Needs root
# (or sudo) for apt-get.
set -euo pipefail
tools=(aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc riscv64-linux-gnu-gcc
       arm-none-eabi-gcc qemu-aarch64 qemu-arm qemu-riscv64)
missing=0
for t in "${tools[@]}"; do
    command -v "$t" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 0 ]; then
    echo "cross compilers and qemu-user are present"
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
    gcc-riscv64-linux-gnu libc6-dev-riscv64-cross \
    gcc-arm-none-eabi libnewlib-arm-none-eabi \
    qemu-user make >/dev/null
for t in "${tools[@]}"; do
    command -v "$t" >/dev/null 2>&1 || { echo "still missing: $t" >&2; exit 1; }
done
echo "cross compilers and qemu-user installed"
