#!/usr/bin/env bash
# The module graph of src/ points one way: down the way of a request. Every `crate::X`
# (and, inside src/flow/, `super::X`) named in code outside the test modules is an edge,
# checked against the ranks below; an edge to the same rank or up fails the check.
#
#   lib, the hidden bridges (bench, fuzzing)  any module
#   config      the builder: settings, validation, discovery
#   service     LoginLayer, LoginService, lookup, require_login
#   extract     AuthUser, AccessToken
#   flow        the steps: login, callback, refresh, logout, backchannel_logout
#               (never each other), then its leaves pending > deny, return_to
#   context     what the steps share
#   http, provider   (peers: neither imports the other)
#   session
#   error
#
# Usage: scripts/check-layers.sh [SRC_DIR]   (exit status 1 on a wrong edge)
set -euo pipefail
src="${1:-$(dirname "${BASH_SOURCE[0]}")/../src}"

rank_of() {
    case "$1" in
        lib|bench|fuzzing) echo 100 ;;
        config) echo 90 ;;
        service) echo 80 ;;
        extract) echo 70 ;;
        flow/login|flow/callback|flow/refresh|flow/logout|flow/backchannel_logout) echo 63 ;;
        flow/pending) echo 62 ;;
        flow/deny|flow/return_to) echo 61 ;;
        flow|flow/mod) echo 64 ;;
        context) echo 50 ;;
        http|provider) echo 40 ;;
        session) echo 30 ;;
        error) echo 20 ;;
        *) echo "" ;;
    esac
}

# The unit a file belongs to: its top-level module, or flow/<file> inside src/flow/.
unit_of_file() {
    local rel="${1#"$src"/}"
    case "$rel" in
        lib.rs) echo lib ;;
        flow/*) local f="${rel#flow/}"; echo "flow/${f%%[/.]*}" ;;
        */*) echo "${rel%%/*}" ;;
        *) echo "${rel%.rs}" ;;
    esac
}

# The unit a path names: `crate::flow::login::start` → flow/login, `crate::http::...` → http.
unit_of_path() {
    local path="$1" top rest
    top="${path%%::*}"
    if [ "$top" = flow ]; then
        rest="${path#flow}"
        rest="${rest#::}"
        rest="${rest%%::*}"
        case "$rest" in
            ""|"{"*) echo flow ;;
            *) echo "flow/$rest" ;;
        esac
    else
        echo "$top"
    fi
}

status=0
while IFS= read -r file; do
    from="$(unit_of_file "$file")"
    from_rank="$(rank_of "$from")"
    if [ -z "$from_rank" ]; then
        echo "check-layers: $file: module '$from' has no rank: add it to scripts/check-layers.sh" >&2
        status=1
        continue
    fi
    # Code lines before the test module, comments dropped; then every crate:: path in them
    # (a `use crate::{a, b}` group is split into its members).
    while IFS=: read -r line text; do
        paths="$(grep -oE '(crate|super)::(\{[^}]*\}|[a-z_]+(::[a-z_]+)?)' <<<"$text" || true)"
        while IFS= read -r path; do
            [ -z "$path" ] && continue
            base="${path%%::*}"
            tail="${path#*::}"
            if [ "$base" = super ]; then
                # super:: inside src/flow/<step>.rs is a sibling in flow; elsewhere it is
                # the parent inside the same unit.
                case "$from" in flow/*) tail="flow::$tail" ;; *) continue ;; esac
            fi
            targets=()
            if [[ "$tail" == "{"* ]]; then
                IFS=',' read -ra members <<<"${tail//[\{\} ]/}"
                for m in "${members[@]}"; do
                    [ -n "$m" ] && targets+=("$m")
                done
            else
                targets+=("$tail")
            fi
            for t in "${targets[@]}"; do
                to="$(unit_of_path "$t")"
                # Items re-exported at the root (crate::LoginLayer) are named by type.
                case "$to" in [A-Z]*) to=lib ;; esac
                [ "$to" = "$from" ] && continue
                [ "$from" = "flow/mod" ] && [ "${to%%/*}" = flow ] && continue
                to_rank="$(rank_of "$to")"
                if [ -z "$to_rank" ]; then
                    echo "check-layers: $file:$line: unknown module in $path" >&2
                    status=1
                elif [ "$to_rank" -ge "$from_rank" ]; then
                    echo "check-layers: $file:$line: $from must not use $to ($path)" >&2
                    status=1
                fi
            done
        done <<<"$paths"
    done < <(awk '
        /^#\[cfg\(test\)\]/ { pending = 1; next }
        pending && /^(pub(\(crate\))? )?mod [a-z_]+ *\{?$/ { exit }
        { pending = 0 }
        { sub(/\/\/.*/, "") }
        /(crate|super)::/ { print FNR ":" $0 }
    ' "$file")
done < <(find "$src" -name '*.rs' | sort)

if [ "$status" -eq 0 ]; then
    echo "check-layers: every edge of src/ points down"
fi
exit "$status"
