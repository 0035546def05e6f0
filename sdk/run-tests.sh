#!/usr/bin/env bash
# Runs the TypeScript and Python SDK test suites, offline and live, against a real eftcloud.
#
#   sdk/run-tests.sh                       # uses target/debug/eftcloud of the repository
#   EFTCLOUD_BIN=/path/to/eftcloud sdk/run-tests.sh
#
# It starts `eftcloud serve` on a free loopback port with a fresh SQLite database in a
# temporary directory, enrolls a merchant, one device per suite and a merchant API key with the
# CLI, starts a reference terminal per device (`eftcloud terminal`), reads the pairing code each
# prints, and runs each suite with the cloud's URL, the key and its code in EFTCLOUD_* variables.
# Every process it started is stopped on exit, whatever happens; the exit status is non-zero
# when any test failed.
set -euo pipefail

sdk_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$sdk_dir")
bin=${EFTCLOUD_BIN:-target/debug/eftcloud}
[[ $bin == /* ]] || bin=$repo_dir/$bin
if [[ ! -x $bin ]]; then
  echo "run-tests.sh: no eftcloud binary at $bin" >&2
  echo "(build it: cargo build -p eftcloud --bin eftcloud, or name one: EFTCLOUD_BIN=...)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/eftcloud-sdk-tests.XXXXXX")
pids=()
failed=()

stop_all() {
  local status=$? pid deadline=$((SECONDS + 5))
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((status != 0)); then
    for log in "$work"/*.log; do
      [[ -f $log ]] || continue
      echo "--- last lines of $(basename "$log") ---" >&2
      tail -n 20 "$log" >&2 || true
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# wait_for_line FILE SECONDS REGEX PID: waits for the first line of FILE matching the extended
# REGEX and prints its first group; fails after SECONDS, or when process PID exits first.
wait_for_line() {
  local file=$1 seconds=$2 pattern=$3 pid=$4 deadline=$((SECONDS + $2)) line
  while ((SECONDS < deadline)); do
    if [[ -f $file ]]; then # the background process may not have opened it yet
      while IFS= read -r line; do
        if [[ $line =~ $pattern ]]; then
          echo "${BASH_REMATCH[1]}"
          return 0
        fi
      done <"$file"
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run-tests.sh: process $pid exited before printing /$pattern/; its output:" >&2
      cat "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "run-tests.sh: nothing matched /$pattern/ in $file within $seconds s; it holds:" >&2
  cat "$file" >&2
  return 1
}

db=(--database-url "sqlite://$work/eftcloud.db")
merchant="SDK Toys"
echo "== eftcloud: $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
cli_log=$work/cli.log # what the enrolment commands say besides their answers
"$bin" migrate "${db[@]}" >>"$cli_log" 2>&1
"$bin" merchant add --name "$merchant" "${db[@]}" >>"$cli_log" 2>&1
devices=(sdk-typescript sdk-python) # one per suite, so that each pairs with a code of its own
declare -A secret code
for device in "${devices[@]}"; do
  secret[$device]=$("$bin" device add --id "$device" --merchant "$merchant" "${db[@]}" 2>>"$cli_log")
done
api_key=$("$bin" api-key create --merchant "$merchant" --scope pos:transact,pos:read,pos:refund,webhooks:manage \
  --label "SDK tests" "${db[@]}" 2>>"$cli_log")

# An admin token keeps the installation closed (no self-service virtual terminals) as in
# production; nothing here needs more than the merchant key.
"$bin" serve --listen 127.0.0.1:0 "${db[@]}" --admin-token "sdk-tests-admin-$RANDOM$RANDOM$RANDOM" \
  --pairing-code-ttl 10m --log warn >"$work/serve.log" 2>&1 </dev/null &
pids+=($!)
address=$(wait_for_line "$work/serve.log" 30 'eftcloud listening on http://([0-9.]+:[0-9]+)' "${pids[-1]}")
base_url=http://$address
echo "== cloud on $base_url"

for device in "${devices[@]}"; do
  "$bin" terminal --cloud "$base_url" --device-id "$device" --secret "${secret[$device]}" \
    --journal "$work/$device.journal" --step-delay 20 --slow-secs 20 \
    >"$work/terminal-$device.log" 2>&1 </dev/null &
  pids+=($!)
  code[$device]=$(wait_for_line "$work/terminal-$device.log" 30 'pairing code: ([0-9]{8})' "${pids[-1]}")
done
echo "== terminals: sdk-typescript (code ${code[sdk-typescript]}), sdk-python (code ${code[sdk-python]})"

export EFTCLOUD_BASE_URL=$base_url EFTCLOUD_API_KEY=$api_key

echo "== TypeScript SDK (sdk/typescript)"
if ! (cd "$sdk_dir/typescript" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build &&
  EFTCLOUD_PAIRING_CODE=${code[sdk-typescript]} npm test --silent); then
  failed+=(TypeScript)
fi

echo "== Python SDK (sdk/python)"
if ! (cd "$sdk_dir/python" && EFTCLOUD_PAIRING_CODE=${code[sdk-python]} python3 -m unittest discover -v 2>&1); then
  failed+=(Python)
fi

if ((${#failed[@]} > 0)); then
  echo "== FAILED: ${failed[*]}"
  exit 1
fi
echo "== both SDK suites passed"
