#!/bin/sh
# make-certs.sh: a private CA and the TLS certificates of the MQTT
# listener 8883 (deploy/mosquitto/mosquitto.conf): one for the broker, one
# client certificate for every user of credentials.txt (cleanprod,
# cleanprod-monitor and each gateway, CN = the broker user name).
#
#   deploy/mosquitto/make-certs.sh [-c credentials.txt] [-o certs-dir] [-n broker-name]...
#
# Run it after `cleanprod gateways mosquitto-acl`, and again after adding
# gateways: what exists is kept (the CA, issued certificates), what is
# missing is made. -n adds a DNS name or IP address under which gateways
# reach the broker (the broker certificate always names mosquitto,
# localhost and 127.0.0.1; delete broker.crt to reissue it with new names).
#
# Keys are 0600. ca.key never leaves this folder: keep it offline. Run as
# root (sudo), the script gives broker.key to the broker's user in its
# container (BROKER_UID, default 1883 as in the eclipse-mosquitto image)
# and cleanprod.key to cleanprod's (CLEANPROD_UID, default 65532 as in
# deploy/Dockerfile), so that each can read its own key and nothing else.
# Give each gateway its <user>.crt, <user>.key and ca.crt.
set -eu

creds=deploy/mosquitto/credentials.txt
out=deploy/mosquitto/certs
names="DNS:mosquitto,DNS:localhost,IP:127.0.0.1"
days=${DAYS:-825}
while getopts c:o:n: opt; do
	case $opt in
	c) creds=$OPTARG ;;
	o) out=$OPTARG ;;
	n) case $OPTARG in
		*[!0-9.:a-fA-F]*) names="$names,DNS:$OPTARG" ;;
		*) names="$names,IP:$OPTARG" ;;
		esac ;;
	*) sed -n '2,21s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
	esac
done
[ -r "$creds" ] || { echo "make-certs.sh: no $creds; run cleanprod gateways mosquitto-acl first" >&2; exit 1; }
umask 077
mkdir -p "$out"
chmod 0755 "$out" # the containers' users reach their own key; every key is 0600

if [ ! -e "$out/ca.key" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
		-subj "/O=cleanprod/CN=cleanprod MQTT CA" -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
	chmod 0644 "$out/ca.crt"
	echo "made the CA $out/ca.crt (keep $out/ca.key offline)"
fi

# issue NAME EXTENSIONS: a key and a certificate signed by the CA.
issue() {
	[ -e "$out/$1.crt" ] && return 0
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
		-subj "/O=cleanprod/CN=$1" -keyout "$out/$1.key" -out "$out/$1.csr" 2>/dev/null
	printf '%s\n' "$2" >"$out/$1.ext"
	openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
		-days "$days" -sha256 -extfile "$out/$1.ext" -out "$out/$1.crt" 2>/dev/null
	rm -f "$out/$1.csr" "$out/$1.ext"
	chmod 0644 "$out/$1.crt"
	echo "issued $out/$1.crt"
}

issue broker "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$names"
# One client certificate per broker user (user:password lines).
grep -v '^[[:space:]]*\(#\|$\)' "$creds" | cut -d: -f1 | while read -r user; do
	case $user in
	*[!A-Za-z0-9._-]*) echo "make-certs.sh: skipping user name $user" >&2; continue ;;
	esac
	issue "$user" "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth"
done

if [ "$(id -u)" = 0 ]; then
	chown "${BROKER_UID:-1883}:${BROKER_GID:-${BROKER_UID:-1883}}" "$out/broker.key"
	[ -e "$out/cleanprod.key" ] && chown "${CLEANPROD_UID:-65532}:${CLEANPROD_GID:-${CLEANPROD_UID:-65532}}" "$out/cleanprod.key"
	echo "broker.key belongs to uid ${BROKER_UID:-1883}, cleanprod.key to uid ${CLEANPROD_UID:-65532}"
else
	echo "as root, this script would give broker.key and cleanprod.key to the containers' users; now run:"
	echo "  sudo chown ${BROKER_UID:-1883}:${BROKER_GID:-${BROKER_UID:-1883}} $out/broker.key && sudo chown ${CLEANPROD_UID:-65532}:${CLEANPROD_GID:-${CLEANPROD_UID:-65532}} $out/cleanprod.key"
fi
