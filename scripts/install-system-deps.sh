#!/usr/bin/env bash
# System packages the studio's recipes and tests use: FluidSynth + a General-MIDI SoundFont (offline dataset
# renders) and Chromium (browser tests). Debian/Ubuntu; skips what is already installed.
set -euo pipefail
pkgs=(fluidsynth fluid-soundfont-gm chromium)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && { echo "system packages present: ${pkgs[*]}"; exit 0; }
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
