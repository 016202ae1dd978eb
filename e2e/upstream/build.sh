#!/usr/bin/env bash
# Builds the test oracle: upstream's aws-cloud-controller-manager, pinned in version.env,
# from the Go module proxy (nothing of it is kept in this repository). The differential and
# takeover tests (ccm/tests/aws_parity.rs) run it beside ours on the same apiserver and moto.
#
#   bin/aws-cloud-controller-manager   the binary (skipped when bin/.stamp says it is current)
#
# `go install k8s.io/cloud-provider-aws/cmd/...@vX` refuses the module because its go.mod has
# a `replace`, so the module source is downloaded and built in a scratch directory, with the
# changes in patches/ applied (each says why). Go's module and build caches make a rebuild
# quick; the first build takes ~7 min on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/version.env"
mkdir -p "$here/bin"
stamp_want="$UPSTREAM_MODULE@$UPSTREAM_VERSION $(cat "$here"/patches/*.patch | sha256sum | cut -c1-16)"
if [ -x "$here/bin/aws-cloud-controller-manager" ] && [ "$(cat "$here/bin/.stamp" 2>/dev/null)" = "$stamp_want" ]; then
  exit 0
fi

src=$(go mod download -json "$UPSTREAM_MODULE@$UPSTREAM_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "go mod download did not give a source directory for $UPSTREAM_MODULE@$UPSTREAM_VERSION" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
for p in "$here"/patches/*.patch; do
  patch --quiet -p1 < "$p"
done
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$UPSTREAM_VERSION -X main.gitVersion=$UPSTREAM_VERSION"
go build -trimpath -ldflags "$ldflags" -o "$here/bin/aws-cloud-controller-manager" ./cmd/aws-cloud-controller-manager
echo "$stamp_want" > "$here/bin/.stamp"
