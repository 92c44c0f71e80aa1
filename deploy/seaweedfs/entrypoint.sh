#!/bin/sh
# SeaweedFS for the compose `scale` profile: master, volume, filer and S3 in one process
# (`weed server -filer -s3`), data in /data, S3 on :8333 with one bucket, `models`.
#
# Credentials: generated at the first start into /credentials/credentials, an AWS shared
# credentials file (INI) on a volume that the Python services mount read-only and name in
# AWS_SHARED_CREDENTIALS_FILE. So no key is written in the repository or the compose file,
# and every deployment has its own. weed makes the pair in its environment its one S3
# identity (without one it denies every request).
set -eu
rm -f /tmp/bucket-ready

file=/credentials/credentials
if [ ! -s "$file" ]; then
  umask 0027 # owner and the xor group only
  python - "$file" <<'PY'
import os, secrets, sys

path = sys.argv[1]
temporary = f"{path}.tmp"
with open(temporary, "w", encoding="utf-8") as out:
    out.write(
        "[default]\n"
        f"aws_access_key_id = XOR{secrets.token_hex(8).upper()}\n"
        f"aws_secret_access_key = {secrets.token_urlsafe(30)}\n"
    )
    out.flush()
    os.fsync(out.fileno())
os.replace(temporary, path)  # all or nothing: a reader never sees half a file
PY
  echo "seaweedfs-entrypoint: generated S3 credentials in $file" >&2
fi

key() { sed -n "s/^$1 *= *//p" "$file"; }
AWS_ACCESS_KEY_ID=$(key aws_access_key_id)
AWS_SECRET_ACCESS_KEY=$(key aws_secret_access_key)
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

# Only S3 listens beyond loopback (on the compose network; never published): the master,
# volume and filer APIs have no authentication, so they stay inside the container.
weed server \
  -dir=/data \
  -ip=127.0.0.1 \
  -ip.bind=127.0.0.1 \
  -master.port=9333 \
  -volume.port=8080 \
  -filer \
  -filer.port=8888 \
  -s3 \
  -s3.ip.bind=0.0.0.0 \
  -s3.port=8333 \
  -s3.port.iceberg=0 \
  "$@" &
server=$!
# docker stop's SIGTERM goes to this shell (PID 1): hand it on, then wait for weed to exit.
trap 'kill -TERM "$server" 2>/dev/null' TERM INT

# The bucket (a filer directory): created once, when the filer first answers.
for _ in $(seq 120); do
  # weed shell exits 1 for "already exists" too: its output says which.
  out=$(echo "s3.bucket.create -name models" |
    timeout 10 weed shell -master=127.0.0.1:9333 -filer=127.0.0.1:8888 2>&1) || true
  if printf '%s' "$out" | grep -Eq "created bucket models|bucket models already exists"; then
    touch /tmp/bucket-ready # the compose health check waits for this
    echo "seaweedfs-entrypoint: bucket models ready" >&2
    break
  fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.5
done
[ -f /tmp/bucket-ready ] || echo "seaweedfs-entrypoint: could not create bucket models" >&2

status=0
wait "$server" || status=$?
if kill -0 "$server" 2>/dev/null; then # the wait was cut short by a signal: weed stops now
  status=0
  wait "$server" || status=$?
fi
exit "$status"
