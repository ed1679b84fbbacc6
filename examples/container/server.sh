#!/bin/sh
# The example "server": shows who it runs as and what it was given, then
# serves until it is told to stop, and exits with its own code.
echo "server: running as uid $(id -u), gid $(id -g)"
echo "server: $DB_PASSWORD_FILE is mode $(stat -L -c %a "$DB_PASSWORD_FILE"), owned by $(stat -L -c %u "$DB_PASSWORD_FILE")"
echo "server: the password has $(wc -c < "$DB_PASSWORD_FILE") bytes"
trap 'echo "server: SIGTERM, shutting down"; exit 42' TERM
echo "server: ready"
while :; do sleep 0.1; done
