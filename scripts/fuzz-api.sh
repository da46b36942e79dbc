#!/usr/bin/env bash
# Schema-driven fuzz of the HTTP API: Schemathesis generates requests from the document Loupe serves at
# /openapi.json, valid and invalid ones, and checks every answer: no 5xx, every status documented, and
# every body (the error envelope of every 4xx and 5xx included) matching the schema the document gives it.
#
#   bash scripts/fuzz-api.sh                      # ~10 minutes: 8 without keys, 2 with an API key
#   LOUPE_FUZZ_SECONDS=120 bash scripts/fuzz-api.sh   # a shorter run (split the same way)
#   bash scripts/fuzz-api.sh --seconds 60 --no-auth   # one pass, authentication off
#
# Options (or the environment variable beside each):
#   --seconds N        total time budget of the fuzzing, in seconds (LOUPE_FUZZ_SECONDS, default 600)
#   --auth-share P     percent of it spent with an API key, after the pass without (LOUPE_FUZZ_AUTH_SHARE,
#                      default 20); the key (read, ingest, delete, admin) turns authentication on, so
#                      the second pass also checks that every answer of the trust boundary is documented
#                      (it leaves out revoking keys, which would revoke its own)
#   --no-auth          no pass with a key (same as --auth-share 0)
#   --workers N        concurrent Schemathesis workers (LOUPE_FUZZ_WORKERS, default 1: with more, Schemathesis
#                      4.32.5 now and then fails in its own generator, a Hypothesis cache shared by threads)
#   LOUPE_FUZZ_CHECKS  the checks, comma-separated (`schemathesis run --help` lists them); default: no 5xx,
#                      status, content type, headers and body as documented, and no request the schema
#                      forbids accepted
#   --seed N           Hypothesis seed, to replay a run (LOUPE_FUZZ_SEED, default random)
#   --report-dir DIR   where the reports go (LOUPE_FUZZ_REPORT_DIR, default a new temporary directory):
#                      JUnit XML and an NDJSON event log per pass, the server's log, and summary.txt:
#                      per pass the operations, test cases, requests and statuses, the 5xx, and every
#                      4xx or 5xx whose body is not the error envelope (counted apart from Schemathesis)
#   --venv DIR         reuse a virtual environment with Schemathesis (LOUPE_FUZZ_VENV; default one is
#                      made in a temporary directory and removed afterwards)
#
# Needs what `npm run setup` makes (node_modules, .venv with Milvus Lite, the model pack) and python3 for
# the throwaway venv (pip installs schemathesis==$SCHEMATHESIS_VERSION). The server runs from its own build
# of src/ in the work directory (dist/ is left alone; LOUPE_FUZZ_ALLOW_TYPE_ERRORS=1 fuzzes a tree that does
# not typecheck yet) on a free port with its data in a temporary directory, the rate limit off;
# a few images are ingested first so that search, similar, media and delete find something. Not part of
# `.ci/run` (it takes minutes); what it finds becomes a regression test in test/http/fuzz-cases.test.ts.
# Exits non-zero when Schemathesis reports a failure.
set -euo pipefail
# The whole script is one block, read before any of it runs: editing the file during a run (which takes
# minutes) cannot change what the run does next.
{
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=4.32.5

seconds="${LOUPE_FUZZ_SECONDS:-600}"
auth_share="${LOUPE_FUZZ_AUTH_SHARE:-20}"
workers="${LOUPE_FUZZ_WORKERS:-1}"
seed="${LOUPE_FUZZ_SEED:-}"
report_dir="${LOUPE_FUZZ_REPORT_DIR:-}"
venv="${LOUPE_FUZZ_VENV:-}"
while [ $# -gt 0 ]; do
  case "$1" in
  --seconds) seconds="$2"; shift 2 ;;
  --auth-share) auth_share="$2"; shift 2 ;;
  --no-auth) auth_share=0; shift ;;
  --workers) workers="$2"; shift 2 ;;
  --seed) seed="$2"; shift 2 ;;
  --report-dir) report_dir="$2"; shift 2 ;;
  --venv) venv="$2"; shift 2 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "fuzz-api: unknown option $1; see --help." >&2; exit 2 ;;
  esac
done
for value in "$seconds" "$auth_share" "$workers"; do
  [[ "$value" =~ ^[0-9]+$ ]] || { echo "fuzz-api: $value is not a whole number; see --help." >&2; exit 2; }
done
[ "$auth_share" -le 100 ] || { echo "fuzz-api: --auth-share is a percent, 0–100." >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/loupe-fuzz.XXXXXX")"
report_dir="${report_dir:-$work/report}"
mkdir -p "$report_dir"
report_dir="$(cd "$report_dir" && pwd)"
data_dir="$work/data"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  # The reports stay; the data dir and a venv made here go.
  rm -rf "$data_dir" "$work/venv" "$work/seed" "$work/app"
}
trap cleanup EXIT

if [ -z "$venv" ]; then
  venv="$work/venv"
  echo "fuzz-api: installing schemathesis==$SCHEMATHESIS_VERSION into a throwaway venv..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
st="$venv/bin/schemathesis"
[ -x "$st" ] || { echo "fuzz-api: no schemathesis in $venv; pip install schemathesis==$SCHEMATHESIS_VERSION there." >&2; exit 1; }

# The server and the key command run from an install of their own in the work directory, compiled from
# src/ there: a rebuild of dist/ during the run (which empties it) cannot pull modules away from under them.
app="$work/app"
mkdir -p "$app"
echo "fuzz-api: compiling src/ into $app/dist..."
if ! node_modules/.bin/tsc -p tsconfig.build.json --outDir "$app/dist" --declaration false --declarationMap false \
  --sourceMap false >"$work/tsc.log" 2>&1; then
  cat "$work/tsc.log" >&2
  if [ "${LOUPE_FUZZ_ALLOW_TYPE_ERRORS:-}" != "1" ]; then
    echo "fuzz-api: src/ does not typecheck; fix it, or set LOUPE_FUZZ_ALLOW_TYPE_ERRORS=1 to fuzz what it emits." >&2
    exit 1
  fi
  echo "fuzz-api: type errors above; fuzzing what tsc emitted (LOUPE_FUZZ_ALLOW_TYPE_ERRORS=1)." >&2
fi
cp -R bin scripts package.json "$app/"
[ -f assets/api-reference.js ] || bash scripts/build.sh
for shared in node_modules models prompts assets .venv; do ln -s "$PWD/$shared" "$app/$shared"; done
port="$(node -e 'const s=require("node:net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
base="http://127.0.0.1:$port"

echo "fuzz-api: starting Loupe on $base (data in $data_dir, log in $report_dir/server.log)..."
mkdir -p "$data_dir"
PORT="$port" HOST=127.0.0.1 LOUPE_DATA_DIR="$data_dir" LOUPE_RATE_LIMIT_PER_SECOND=0 LOUPE_LOG_LEVEL=info \
  node "$app/bin/loupe.js" serve >"$report_dir/server.log" 2>&1 &
server_pid=$!

ready=""
for _ in $(seq 1 300); do
  kill -0 "$server_pid" 2>/dev/null || { echo "fuzz-api: the server exited; see $report_dir/server.log." >&2; tail -20 "$report_dir/server.log" >&2; exit 1; }
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = "200" ]; then ready=1; break; fi
  sleep 1
done
[ -n "$ready" ] || { echo "fuzz-api: /readyz did not answer 200 within 300 s." >&2; exit 1; }

echo "fuzz-api: seeding images..."
mkdir -p "$work/seed"
node --input-type=module -e '
import sharp from "sharp";
const colors = [[220, 40, 40], [40, 160, 60], [40, 80, 220], [230, 200, 40]];
for (const [index, [r, g, b]] of colors.entries()) {
  const shape = index % 2 === 0
    ? `<circle cx="48" cy="48" r="${20 + index * 4}" fill="rgb(${r},${g},${b})"/>`
    : `<rect x="${16 + index * 2}" y="20" width="56" height="48" fill="rgb(${r},${g},${b})"/>`;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96"><rect width="96" height="96" fill="white"/>${shape}</svg>`;
  await sharp(Buffer.from(svg)).png().toFile(`'"$work/seed"'/seed-${index}.png`);
}
'
seed_files=()
for file in "$work"/seed/*.png; do seed_files+=(-F "files=@$file;type=image/png"); done
seeded="$(curl -s -w '\n%{http_code}' "${seed_files[@]}" "$base/v1/images")"
[ "$(tail -1 <<<"$seeded")" = "200" ] || { echo "fuzz-api: seeding failed: $seeded" >&2; exit 1; }

checks="${LOUPE_FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection}"
# A request the schema forbids may be refused by the server before any route: too slow (408), too large
# (413), for a foreign Host (421), or with headers and query over 16 KiB (431). Those are rejections too.
cat >"$work/schemathesis.toml" <<'TOML'
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "408", "409", "413", "415", "421", "422", "428", "429", "431", "5xx"]
TOML
auth_seconds=$((seconds * auth_share / 100))
open_seconds=$((seconds - auth_seconds))
status=0

# One Schemathesis pass: $1 its name, $2 its seconds, then extra arguments.
fuzz() {
  local name="$1" budget="$2"
  shift 2
  [ "$budget" -gt 0 ] || return 0
  echo "fuzz-api: pass \"$name\", $budget s, checks $checks..."
  local started=$SECONDS
  # From the work directory: Schemathesis keeps its state in ./.schemathesis.
  (cd "$work" && "$st" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
    --checks "$checks" \
    --max-time "$budget" \
    --workers "$workers" \
    --request-timeout 60 \
    --suppress-health-check all \
    --generation-database none \
    ${seed:+--seed "$seed"} \
    --report junit,ndjson \
    --report-junit-path "$report_dir/$name.junit.xml" \
    --report-ndjson-path "$report_dir/$name.ndjson" \
    --no-color \
    "$@") 2>&1 | tee "$report_dir/$name.txt" || status=1
  echo "$name: $((SECONDS - started)) s" >>"$report_dir/summary.txt"
}

fuzz open "$open_seconds"

if [ "$auth_seconds" -gt 0 ]; then
  key="$(LOUPE_DATA_DIR="$data_dir" node "$app/bin/loupe.js" keys create --tenant default --scopes read,ingest,delete,admin --name fuzz --json |
    node -e 'let t="";process.stdin.on("data",(d)=>{t+=d}).on("end",()=>console.log(JSON.parse(t).key))')"
  # A running server sees a new key within seconds; wait until it asks for one.
  for _ in $(seq 1 30); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/models")" = "401" ] && break
    sleep 0.5
  done
  # The key goes in every request; Schemathesis must not replace it with generated credentials. Revoking
  # keys is left out: the fuzzer lists the tenant's keys and would revoke its own, and every request after
  # that would be a 401 (revocation has its own tests, test/http/auth-admin.test.ts).
  fuzz keyed "$auth_seconds" -H "Authorization: Bearer $key" --generation-with-security-parameters false \
    --exclude-operation-id revokeApiKey
fi

# Counts from the event logs, and a check of its own: every 4xx and 5xx body is the error envelope,
# whatever status it has (Schemathesis checks bodies only against the statuses the document lists).
"$venv/bin/python" - "$report_dir" >>"$report_dir/summary.txt" <<'PY'
import base64, collections, json, pathlib, re, sys

def envelope(body):
    try:
        error = json.loads(body)["error"]
        return all(isinstance(error.get(key), str) for key in ("code", "message", "requestId"))
    except Exception:
        return False

for log in sorted(pathlib.Path(sys.argv[1]).glob("*.ndjson")):
    operations, statuses, failed_checks = set(), collections.Counter(), collections.Counter()
    cases = requests = outside = 0
    examples = []
    with log.open() as lines:
        for line in lines:
            event = json.loads(line).get("ScenarioFinished")
            if event is None:
                continue
            recorder = event["recorder"]
            cases += len(recorder.get("cases", {}))
            for check in (c for checks in recorder.get("checks", {}).values() for c in checks):
                if check.get("status") == "failure":
                    failed_checks[check.get("name", "?")] += 1
            for interaction in recorder.get("interactions", {}).values():
                response = interaction.get("response")
                if response is None:
                    continue
                requests += 1
                request = interaction["request"]
                if re.match(r"^[A-Z]+ /", recorder.get("label") or ""):
                    operations.add(recorder["label"])
                status = response["status_code"]
                statuses[status] += 1
                if status >= 400:
                    content = response.get("content") or {}
                    body = base64.b64decode(content["$base64"]) if "$base64" in content else (content.get("string") or "").encode()
                    if not envelope(body):
                        outside += 1
                        if len(examples) < 5:
                            examples.append(f"{request['method']} {request['uri']} -> {status} {body[:200]!r}")
    print(f"{log.stem}: {len(operations)} operations, {cases} test cases, {requests} requests")
    print(f"  statuses: {dict(sorted(statuses.items()))}")
    print(f"  5xx: {sum(n for s, n in statuses.items() if s >= 500)}; 4xx/5xx outside the envelope: {outside}")
    print(f"  failed checks: {dict(failed_checks) or 'none'}")
    for example in examples:
        print(f"    {example}")
PY
grep -c '"level":50' "$report_dir/server.log" | sed 's/^/server errors logged: /' >>"$report_dir/summary.txt" || true
echo "fuzz-api: reports in $report_dir"
cat "$report_dir/summary.txt"
exit "$status"
}
