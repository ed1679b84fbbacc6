#!/bin/sh
# The "application": reads its database password from the file hushbox wrote.
set -eu
echo "app: DB_PASSWORD_FILE=$DB_PASSWORD_FILE"
echo "app: on a $(stat -f -c %T "$DB_PASSWORD_FILE") filesystem, mode $(stat -L -c %a "$DB_PASSWORD_FILE")"
echo "app: the password is: $(cat "$DB_PASSWORD_FILE")"
if [ -n "${API_TOKEN:-}" ]; then echo "app: API_TOKEN has ${#API_TOKEN} characters"; fi
