#!/usr/bin/env bash
# Builds the webhook and operator images here, offline, from the Dockerfile users
# build with: the release binaries are compiled on this machine (statically linked)
# and placed on an empty base, then tagged in the local Docker engine the local
# cluster's node runs pods from. The chart and the operator have no default image
# (docs/security/images.md): the demo and the tests name these tags.
#
#   scripts/build-images.sh              build both images (starts a Docker engine if
#                                        none runs, and leaves it running); an image
#                                        whose binary did not change is kept as it is
#   scripts/build-images.sh --helm-set   print the chart values naming these images
#                                        (for `helm install --set ...`)
#
# Environment:
#   IMAGE_REGISTRY   default cwo.local (a name nobody can claim on a public registry,
#                    like the node's cwo.local/pause; nothing is pulled or pushed)
#   IMAGE_TAG        default: the workspace version (the chart's appVersion)
set -euo pipefail
cd "$(dirname "$0")/.."

registry=${IMAGE_REGISTRY:-cwo.local}
tag=${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)}
# Each image: its Dockerfile stage, its repository name and the binary it carries.
images=("webhook commerce-webhook commerce-webhook" "operator operator commerce-webhook-operator")

if [ "${1:-}" = --helm-set ]; then
  echo "image.repository=$registry/operator,image.tag=$tag,webhookImage.repository=$registry/commerce-webhook,webhookImage.tag=$tag"
  exit 0
fi

bash scripts/release-build.sh -p commerce-webhook -p commerce-webhook-operator --bins
release=$(bash scripts/release-build.sh --print-dir)

bash scripts/local-cluster.sh engine
docker=$(command -v /usr/bin/docker || command -v docker)
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/bin"
cp Dockerfile "$context/Dockerfile"
cp "$release/commerce-webhook" "$release/commerce-webhook-operator" "$context/bin/"

for image in "${images[@]}"; do
  read -r stage repository binary <<<"$image"
  name=$registry/$repository:$tag
  # The binary's hash, kept as a label: an unchanged binary (a cached run) keeps its
  # image instead of paying a build.
  sum=$(sha256sum "$release/$binary" | cut -d ' ' -f 1)
  if [ "$("$docker" image inspect "$name" --format '{{index .Config.Labels "dev.cwo.binary-sha256"}}' 2>/dev/null)" = "$sum" ]; then
    echo "build-images: $name (unchanged)"
    continue
  fi
  DOCKER_BUILDKIT=1 "$docker" build -q --target "$stage" --label "dev.cwo.binary-sha256=$sum" \
    --build-arg BINARIES=prebuilt --build-arg BASE_IMAGE=scratch -t "$name" "$context" >/dev/null
  size=$("$docker" image inspect "$name" --format '{{.Size}}')
  echo "build-images: $name ($((size / 1024 / 1024)) MiB)"
done
