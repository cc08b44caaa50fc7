#!/bin/sh
# make demo: the docs' main job end to end with the `ugen` command.
#
# `make demo` installs what is missing (scripts/deps.sh), builds, then runs this:
#   1. starts the local sandbox (its own dir under a temp dir, a free port),
#   2. starts `ugen webhook listen` on a free loopback port with a fresh secret,
#   3. points the account's webhook at it (`ugen webhooks set`),
#   4. creates the docs' example job with --wait (progress through every stage)
#      and prints the final video URL,
#   5. shows the verified job.completed webhook the listener received,
#   6. estimates credits for the same job,
#   7. stops the sandbox.
# The sandbox and the listener are cleaned up on success, failure and Ctrl-C.
#
# Against a real account: export UGEN_API_KEY and UGEN_BASE_URL (both) and
# UGEN_DEMO_REAL=1, and run `make demo` (or `sh scripts/demo.sh`). No sandbox is
# started then, and the job SPENDS REAL CREDITS. Without UGEN_DEMO_REAL=1 the
# demo always runs on its own new sandbox: UGEN_API_KEY / UGEN_BASE_URL /
# UGEN_JWT in the caller's environment (often a sandbox's exports, maybe of a
# sandbox stopped since) are ignored, and the demo says so. The account's webhook configuration is not touched; to see
# a delivery, expose a local port through an HTTPS tunnel and set
#   UGEN_DEMO_WEBHOOK_URL=https://<tunnel>/   (sent as the job's webhook_url)
#   UGEN_DEMO_LISTEN_PORT=8787                (the local port the tunnel forwards to)
#   UGEN_WEBHOOK_SECRET=<the account's webhook secret>
# Other knobs: LUA (interpreter, default lua5.4), UGEN_CLI (the command to run
# instead of "$LUA bin/ugen"), UGEN_DEMO_SPEED (sandbox clock speed, default 1),
# UGEN_DEMO_INTERVAL (seconds between polls: 0.5 on the sandbox, 10 otherwise).
set -u
cd "$(dirname "$0")/.." || exit 1

LUA=${LUA:-lua5.4}
UGEN=${UGEN_CLI:-"$LUA bin/ugen"}
SPEED=${UGEN_DEMO_SPEED:-1}

START=$(date +%s)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ugen-demo.XXXXXX") || exit 1
SBDIR="$TMP/sandbox"
LISTEN_OUT="$TMP/listen.out"
LISTEN_PID=""
SANDBOX_STARTED=0
STEP="setup"

cleanup() {
  rc=$?
  trap - EXIT INT TERM
  if [ -n "$LISTEN_PID" ] && kill -0 "$LISTEN_PID" 2>/dev/null; then
    kill "$LISTEN_PID" 2>/dev/null
    wait "$LISTEN_PID" 2>/dev/null
  fi
  if [ "$SANDBOX_STARTED" = 1 ] && $UGEN sandbox status --dir "$SBDIR" >/dev/null 2>&1; then
    $UGEN sandbox stop --dir "$SBDIR" >/dev/null 2>&1 || echo "demo: could not stop the sandbox in $SBDIR" >&2
  fi
  rm -rf "$TMP"
  if [ "$rc" -ne 0 ]; then
    echo "" >&2
    echo "demo FAILED at step: $STEP (exit $rc)" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '%s\n' "$*"; }
step() { STEP=$1; say ""; say "== $1"; }
die() { echo "demo: $*" >&2; exit 1; }

if [ "${UGEN_DEMO_REAL:-}" = 1 ]; then
  MODE=real
  if [ -z "${UGEN_API_KEY:-}" ] || [ -z "${UGEN_BASE_URL:-}" ]; then
    die "UGEN_DEMO_REAL=1 needs UGEN_API_KEY and UGEN_BASE_URL of the account"
  fi
else
  MODE=sandbox
  # the caller's settings (a sandbox's exports, perhaps stale) never point the demo elsewhere
  if [ -n "${UGEN_API_KEY:-}${UGEN_BASE_URL:-}${UGEN_JWT:-}" ]; then
    echo "demo: ignoring UGEN_BASE_URL/UGEN_API_KEY/UGEN_JWT from the environment${UGEN_BASE_URL:+ (UGEN_BASE_URL=$UGEN_BASE_URL)}:" \
      "the demo starts its own sandbox; UGEN_DEMO_REAL=1 runs it against that account (real credits)" >&2
  fi
  unset UGEN_API_KEY UGEN_BASE_URL UGEN_JWT
fi

say "lua-ugen demo: the docs' main job end to end (mode: $MODE)"

# 1. the sandbox ------------------------------------------------------------
if [ "$MODE" = sandbox ]; then
  step "1/7 starting the local sandbox: ugen sandbox start --port 0 --dir <tmp> --speed $SPEED"
  SANDBOX_STARTED=1 # from here on, cleanup stops whatever runs in $SBDIR
  exports=$($UGEN sandbox start --port 0 --dir "$SBDIR" --speed "$SPEED") || die "the sandbox did not start"
  eval "$exports"
  if [ -z "${UGEN_BASE_URL:-}" ] || [ -z "${UGEN_API_KEY:-}" ]; then die "sandbox start printed no configuration"; fi
  export UGEN_BASE_URL UGEN_API_KEY
  say "   UGEN_BASE_URL=$UGEN_BASE_URL (a test key is in UGEN_API_KEY)"
  INTERVAL=${UGEN_DEMO_INTERVAL:-0.5}
  WAIT_TIMEOUT=300
else
  step "1/7 using the account at $UGEN_BASE_URL (no sandbox; this job spends real credits)"
  INTERVAL=${UGEN_DEMO_INTERVAL:-10}
  WAIT_TIMEOUT=1800
fi

# 2. the webhook receiver ---------------------------------------------------------
WEBHOOK=1
if [ "$MODE" = sandbox ]; then
  SECRET=$($UGEN webhook new-secret) || die "cannot make a webhook secret"
  PORT=0
elif [ -n "${UGEN_DEMO_WEBHOOK_URL:-}" ] && [ -n "${UGEN_WEBHOOK_SECRET:-}" ]; then
  SECRET=$UGEN_WEBHOOK_SECRET
  PORT=${UGEN_DEMO_LISTEN_PORT:-8787}
else
  WEBHOOK=0
fi

if [ "$WEBHOOK" = 1 ]; then
  step "2/7 starting a webhook receiver: ugen webhook listen --port $PORT (the secret in UGEN_WEBHOOK_SECRET)"
  UGEN_WEBHOOK_SECRET=$SECRET $UGEN webhook listen --port "$PORT" \
    --timeout $((WAIT_TIMEOUT + 60)) >"$LISTEN_OUT" 2>&1 &
  LISTEN_PID=$!
  LISTEN_URL=""
  i=0
  while [ $i -lt 100 ]; do
    LISTEN_URL=$(sed -n 's/^listening on //p' "$LISTEN_OUT" 2>/dev/null)
    [ -n "$LISTEN_URL" ] && break
    kill -0 "$LISTEN_PID" 2>/dev/null || { cat "$LISTEN_OUT" >&2; die "the webhook receiver exited"; }
    sleep 0.1
    i=$((i + 1))
  done
  [ -n "$LISTEN_URL" ] || die "the webhook receiver did not start"
  say "   listening on $LISTEN_URL"
else
  step "2/7 webhook receiver skipped (real account: set UGEN_DEMO_WEBHOOK_URL and UGEN_WEBHOOK_SECRET)"
fi

# 3. the account's webhook ------------------------------------------------------------
JOB_WEBHOOK=""
if [ "$WEBHOOK" = 1 ] && [ "$MODE" = sandbox ]; then
  step "3/7 pointing the account's webhook at it: ugen webhooks set --url $LISTEN_URL (same secret)"
  UGEN_WEBHOOK_SECRET=$SECRET $UGEN webhooks set --url "$LISTEN_URL" >"$TMP/set.out" || die "webhooks set failed"
  sed "s/^/   /" "$TMP/set.out"
  $UGEN webhooks get | sed 's/^/   /'
elif [ "$WEBHOOK" = 1 ]; then
  step "3/7 sending this job's deliveries to $UGEN_DEMO_WEBHOOK_URL (per-job webhook_url; account config untouched)"
  JOB_WEBHOOK=$UGEN_DEMO_WEBHOOK_URL
else
  step "3/7 webhook configuration skipped"
fi

# 4. the job --------------------------------------------------------------------------
step "4/7 creating the docs' example job and following it (ugen jobs create ... --wait)"
say "   Premium Wireless Headphones, 3 segments, veo3_fast, holdable, tiktok_karaoke, music on"
set -- --product-name "Premium Wireless Headphones" \
  --image-url "https://example.com/headphones.jpg" \
  --persona-id "09d3a33a-3eb0-480a-80df-0c64dbf7c98f" \
  --segments 3 --model veo3_fast --interaction-mode holdable \
  --caption-style tiktok_karaoke --music-enabled \
  --wait --interval "$INTERVAL" --timeout "$WAIT_TIMEOUT"
[ -n "$JOB_WEBHOOK" ] && set -- "$@" --webhook-url "$JOB_WEBHOOK"
$UGEN jobs create "$@" >"$TMP/job.out" || die "the job did not complete"
JOB_ID=$(sed -n 1p "$TMP/job.out")
VIDEO_URL=$(sed -n '$p' "$TMP/job.out")
say "   job id:          $JOB_ID"
say "   final video URL: $VIDEO_URL"

# 5. the webhook ----------------------------------------------------------------------
if [ "$WEBHOOK" = 1 ]; then
  step "5/7 the signed job.completed webhook for job $JOB_ID, as the receiver printed it"
  # The receiver prints every verified delivery (other jobs of the account may
  # deliver too); wait for this job's, then stop it.
  HEAD="received job.completed for job $JOB_ID (signature verified"
  i=0
  while ! grep -qF "$HEAD" "$LISTEN_OUT" && [ $i -lt 300 ]; do
    kill -0 "$LISTEN_PID" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
  done
  kill "$LISTEN_PID" 2>/dev/null
  wait "$LISTEN_PID" 2>/dev/null
  LISTEN_PID=""
  if ! grep -qF "$HEAD" "$LISTEN_OUT"; then
    sed 's/^/   /' "$LISTEN_OUT" >&2
    die "no verified job.completed delivery for job $JOB_ID within 30 s of its completion"
  fi
  # this job's block: its header line and the indented lines under it
  awk -v head="$HEAD" 'index($0, head) == 1 { on = 1; print "   " $0; next }
                       on && /^  / { print "   " $0; next } { on = 0 }' "$LISTEN_OUT"
  grep '^rejected' "$LISTEN_OUT" | sed 's/^/   /'
else
  step "5/7 webhook skipped"
fi

# 6. credits --------------------------------------------------------------------------
step "6/7 estimating credits: ugen credits estimate --segments 3 --model veo3_fast --variant i2v --music-enabled --voice-enabled"
$UGEN credits estimate --segments 3 --model veo3_fast --variant i2v --music-enabled --voice-enabled \
  >"$TMP/estimate.out" || die "credits estimate failed"
sed 's/^/   /' "$TMP/estimate.out"

# 7. stop -----------------------------------------------------------------------------
if [ "$MODE" = sandbox ]; then
  step "7/7 stopping the sandbox"
  $UGEN webhooks delete >/dev/null || die "webhooks delete failed"
  $UGEN sandbox stop --dir "$SBDIR" >"$TMP/stop.out" 2>&1 || { cat "$TMP/stop.out" >&2; die "sandbox stop failed"; }
  SANDBOX_STARTED=0
  sed 's/^/   /' "$TMP/stop.out"
else
  step "7/7 done (no sandbox to stop)"
fi

STEP="end"
say ""
say "demo OK in $(( $(date +%s) - START )) s: job $JOB_ID completed, video at $VIDEO_URL"
