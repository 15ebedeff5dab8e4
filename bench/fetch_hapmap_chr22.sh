#!/usr/bin/env bash
# The HapMap II chr22 genetic map (hg19) from Debian's bio-eagle-examples, for the scenarios
# with a real recombination map (bench/scenarios/ooa_map.yaml): resources/genetic_map_hg19_example.txt.gz
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download bio-eagle-examples >/dev/null && dpkg -x bio-eagle-examples_*.deb x)
mkdir -p resources
cp "$tmp"/x/usr/share/doc/bio-eagle/examples/tables/genetic_map_hg19_example.txt.gz resources/
echo "resources/genetic_map_hg19_example.txt.gz"
