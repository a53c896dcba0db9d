#!/usr/bin/env bash
# Install Debian packages (as root, else with sudo) without letting their maintainer scripts start services: a
# policy-rc.d that says no while apt runs keeps prometheus from taking 9090 and docker.io from starting an engine of
# its own. Used by .ci/run and scripts/compose-test.sh.
#   scripts/apt-install.sh PACKAGE...
set -euo pipefail
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)

temporary_policy=
remove_policy() {
    [ -z "$temporary_policy" ] || "${as_root[@]}" rm -f /usr/sbin/policy-rc.d
}
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${as_root[@]}" chmod +x /usr/sbin/policy-rc.d
    temporary_policy=yes
    trap remove_policy EXIT
fi
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
