#!/bin/sh
# The example app: says where its secret lives and how it is protected,
# then serves until stopped.
f=$DB_PASSWORD_FILE
echo "app: uid=$(id -u) fs=$(stat -f -c %T "$f") owner=$(stat -L -c %u:%g "$f") mode=$(stat -L -c %a "$f") bytes=$(wc -c < "$f")"
echo "app: ready"
trap 'exit 0' TERM
while :; do sleep 1; done
