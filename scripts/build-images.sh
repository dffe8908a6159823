#!/usr/bin/env bash
# Builds the webhook and operator images here, offline, from the Dockerfile users
# build with: the release binaries are compiled on this machine (statically linked)
# and placed on an empty base, then tagged as the Helm chart and the operator expect
# by default, in the local Docker engine the local cluster's node runs pods from.
#
#   scripts/build-images.sh            build both images (starts a Docker engine if none
#                                      runs, and leaves it running)
#
# Environment:
#   IMAGE_REGISTRY   default ghcr.io/commerce-webhook-operator
#   IMAGE_TAG        default: the workspace version (the chart's appVersion)
set -euo pipefail
cd "$(dirname "$0")/.."

registry=${IMAGE_REGISTRY:-ghcr.io/commerce-webhook-operator}
tag=${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)}
bash scripts/release-build.sh -p commerce-webhook -p commerce-webhook-operator --bins
release=$(bash scripts/release-build.sh --print-dir)

bash scripts/local-cluster.sh engine
docker=$(command -v /usr/bin/docker || command -v docker)
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/bin"
cp "$release/commerce-webhook" "$release/commerce-webhook-operator" "$context/bin/"
cp Dockerfile "$context/Dockerfile"

for image in webhook:commerce-webhook operator:operator; do
  stage=${image%%:*} name=$registry/${image#*:}:$tag
  DOCKER_BUILDKIT=1 "$docker" build -q --target "$stage" \
    --build-arg BINARIES=prebuilt --build-arg BASE_IMAGE=scratch -t "$name" "$context" >/dev/null
  size=$("$docker" image inspect "$name" --format '{{.Size}}')
  echo "build-images: $name ($((size / 1024 / 1024)) MiB)"
done
