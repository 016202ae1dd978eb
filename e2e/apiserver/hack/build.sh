#!/usr/bin/env bash
# Builds bin/apiserver-harness. Go's build cache makes a rebuild with no change take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/version.env
V=v$K8S_VERSION
minor=${K8S_VERSION#*.}; minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$V -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  # No git checkout of Kubernetes here, so no commit; an empty one beats "$Format:%H$".
  ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
mkdir -p bin
go build -trimpath -ldflags "-s -w$ldflags" -o bin/apiserver-harness .
