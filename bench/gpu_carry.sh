#!/usr/bin/env bash
# What bench/gpu_acceptance.py needs on a GPU machine that has no network, gathered here into
# .carry/ (git-ignored; about 20 MiB, within the 64 MiB a working tree may take along):
#   .carry/wheels/  the project's dependencies that the GPU image lacks, for its Python 3.12
#                   (manylinux x86-64): the H200 image has torch 2.11, numpy, safetensors,
#                   pyarrow, tqdm, huggingface_hub, pytest, hypothesis and pybind11, not these.
#                   Versions are the ones this project's CI tests.
#   .carry/shared/  the official fixtures and the E. coli genome, which the tests and the
#                   genome job read (NTENGINE_SHARED points the tests there).
# Usage: bash bench/gpu_carry.sh [SHARED]   (SHARED: default ../shared beside the repository)
#   CARRY_PYTHON=3.11 picks wheels for another Python (default 3.12, the GPU image's).
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${1:-../shared}"
carry=.carry
rm -rf "$carry" && mkdir -p "$carry/wheels" "$carry/shared/data/genomes" "$carry/shared/fixtures"

# name==version: why it is needed
wheels=(
  pysam==0.24.1                  # FASTA access (faidx, bgzip) for genome jobs
  pyBigWig==0.3.29               # bigWig tracks
  zarr==3.1.6                    # the genome job's store
  numcodecs==0.16.6              # zarr's codecs
  donfig==0.8.1.post1            # zarr's configuration
  google-crc32c==1.9.0           # zarr's checksums
  jsonschema==4.26.0             # ntengine bench validates its report
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==0.30.0
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "${CARRY_PYTHON:-3.12}" --implementation cp \
  "${platforms[@]}" -d "$carry/wheels" "${wheels[@]}"

cp -r "$shared/fixtures/nt-reference" "$carry/shared/fixtures/"
cp "$shared/data/genomes/ecoli_K12_MG1655_NC_000913.3.fna.gz" "$carry/shared/data/genomes/"
du -sh "$carry" "$carry"/*
