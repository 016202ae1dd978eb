#!/usr/bin/env bash
# Regenerates go.mod's `replace` pins for the Kubernetes staging modules.
#
# k8s.io/kubernetes requires every staging module (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0
# and maps it to ./staging in its own tree; the module proxy serves no v0.0.0, so a module that
# depends on k8s.io/kubernetes must replace each of them with the matching v0.<minor>.<patch> tag.
# The list changes between minors, so it is read from k8s's go.mod rather than typed by hand.
#
# Usage: hack/pin-k8s.sh [1.37.2]
set -euo pipefail
cd "$(dirname "$0")/.."
V=${1:-$(sed -n 's/^K8S_VERSION=//p' hack/version.env)}
STAGING=v0.${V#1.}

gomod=$(go mod download -json "k8s.io/kubernetes@v$V" | jq -r .GoMod)
modules=$(grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod" | awk '{print $1}')
[ -n "$modules" ] || { echo "no staging modules found in $gomod" >&2; exit 1; }

# Drop old pins, then add one per staging module.
for old in $(go mod edit -json | jq -r '.Replace[]?.Old.Path | select(startswith("k8s.io/"))'); do
  go mod edit -dropreplace="$old"
done
for m in $modules; do
  go mod edit -replace="$m=$m@$STAGING"
done
go mod edit -require="k8s.io/kubernetes@v$V"

# Keep k8s's GODEBUG defaults so the runtime behaves like an upstream build.
godebug=$(sed -n 's/^godebug default=//p' "$gomod")
[ -z "$godebug" ] || go mod edit -godebug="default=$godebug"

sed -i "s/^K8S_VERSION=.*/K8S_VERSION=$V/" hack/version.env
go mod tidy
echo "pinned $(echo "$modules" | wc -l) staging modules to $STAGING"
