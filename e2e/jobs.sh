# Background builds for e2e/test.sh and e2e/sandbox.sh (sourced): each runs with its output in
# $logs/<name>.log and says when it is ready, or prints its output when it fails.
# Uses $logs (a directory the caller made) and the array pids.

# Runs "$@" in the background as <name>.
background() {
  local name=$1
  shift
  (
    start=$SECONDS
    if "$@" >"$logs/$name.log" 2>&1; then
      echo "    $name ready in $((SECONDS - start)) s"
    else
      echo "    $name FAILED after $((SECONDS - start)) s; its output:"
      sed 's/^/      /' "$logs/$name.log"
      exit 1
    fi
  ) &
  pids+=($!)
}

# Stops them: each whole process group when the caller runs with job control (`set -m`).
stop_background() {
  local p
  for p in "${pids[@]}"; do
    kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true
  done
}

# Waits for them all; fails when one failed (its output is above).
wait_background() {
  local p failed=0
  for p in "${pids[@]}"; do
    wait "$p" || failed=1
  done
  pids=()
  [ "$failed" = 0 ] || { echo "a background build failed (above)"; return 1; }
}
