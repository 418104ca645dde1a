# scripts/lib.sh: what scripts/test and scripts/bench-e2e share to get the
# real servers onto a fresh Debian 12 machine that has only Go. Source it
# from the module root (the functions use relative paths such as .cache/):
#
#   cd "$(dirname "${BASH_SOURCE[0]}")/.." && . scripts/lib.sh
#
# phase NAME CMD...      run CMD, printing its name and how long it took
# install_packages       mosquitto, promtool, amtool, chromium, poppler-utils,
#                        openssl and a CJK font from Debian, if any is missing
# install_mosquitto      mosquitto (and its clients) from Debian, if missing
# build_influxd          influxd $INFLUXD_VERSION into .cache/bin, once
# mosquitto_path         the mosquitto binary, or nothing
#
# Functions below run through phase, which shellcheck cannot follow.
# shellcheck shell=bash disable=SC2317

readonly INFLUXD_VERSION=v1.8.10

# phase NAME CMD...: runs CMD, printing its name and how long it took.
phase() {
	local name=$1 start=$SECONDS status=0
	shift
	echo "==> $name"
	"$@" || status=$?
	echo "<== $name: $((SECONDS - start))s$([ "$status" = 0 ] || echo ", FAILED (exit $status)")"
	return "$status"
}

sudo_if_needed() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

mosquitto_path() {
	command -v mosquitto || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true
}

readonly CJK_FONT=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc

# apt_install PKG...: installs Debian packages without starting their
# daemons.
apt_install() {
	# Keep the packages' daemons from starting (tests start their own, on
	# random ports), unless the machine already has a policy.
	local policy=/usr/sbin/policy-rc.d created=""
	if [ ! -e "$policy" ]; then
		sudo_if_needed sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" || return
		created=1
	fi
	local status=0
	{
		sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
	} || status=$?
	if [ -n "$created" ]; then sudo_if_needed rm -f "$policy"; fi
	return "$status"
}

install_packages() {
	if [ -n "$(mosquitto_path)" ] && command -v promtool >/dev/null && command -v amtool >/dev/null &&
		command -v chromium >/dev/null && command -v pdftoppm >/dev/null && command -v openssl >/dev/null &&
		[ -e "$CJK_FONT" ]; then
		echo "mosquitto, promtool, amtool, chromium, poppler-utils, openssl and fonts-wqy-microhei are installed"
		return
	fi
	# openssl: deploy/mosquitto/make-certs.sh, run by internal/deploycheck.
	apt_install mosquitto mosquitto-clients prometheus prometheus-alertmanager \
		chromium poppler-utils openssl fonts-wqy-microhei
}

install_mosquitto() {
	if [ -n "$(mosquitto_path)" ]; then
		echo "mosquitto is installed"
		return
	fi
	apt_install mosquitto mosquitto-clients
}

build_influxd() {
	if [ -x .cache/bin/influxd ]; then
		echo "using cached .cache/bin/influxd"
		return
	fi
	# Build into a scratch dir and move it in, so an interrupted build never
	# leaves a broken binary that later runs would trust.
	# (phase runs this in an `||` context, where set -e is off: chain with &&.)
	rm -rf .cache/build-bin &&
		GOBIN="$PWD/.cache/build-bin" go install "github.com/influxdata/influxdb/cmd/influxd@$INFLUXD_VERSION" &&
		mkdir -p .cache/bin &&
		mv .cache/build-bin/influxd .cache/bin/influxd &&
		rm -rf .cache/build-bin
}
