#!/usr/bin/env bash
# Builds the .deb packages from binaries already in DIST (scripts/release.sh
# names them fleetagent-linux-armv6, ...-arm64, ...). `make release` runs it;
# so does deploy/packaging_test.go, with its own binaries.
#
#   deploy/build-debs.sh VERSION DIST [pkg:debarch ...]
#
# VERSION is `git describe` output; the package version is made
# Debian-safe from it. Default targets: the agent for armhf, arm64, amd64
# and the hub for amd64, arm64. NFPM overrides the nfpm binary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:?usage: build-debs.sh VERSION DIST [pkg:arch ...]}
dist=$(cd "${2:?usage: build-debs.sh VERSION DIST [pkg:arch ...]}" && pwd)
shift 2
targets=("$@")
if ((${#targets[@]} == 0)); then
	targets=(fleetagent:armhf fleetagent:arm64 fleetagent:amd64 fleethub:amd64 fleethub:arm64)
fi
nfpm=${NFPM:-$root/.tools/bin/nfpm}
if [ ! -x "$nfpm" ]; then
	echo "build-debs.sh: $nfpm missing: run \`make tools\`" >&2
	exit 1
fi

# debversion: v1.2.0-3-gabc1234-dirty -> 1.2.0+3.gabc1234.dirty (sorts
# after 1.2.0); a bare hash (no tag yet) -> 0.0.0+gitabc1234.
debversion() {
	local v=${1#v}
	if [[ $v =~ ^[0-9a-f]{7,40}(-dirty)?$ || ! $v =~ ^[0-9] ]]; then
		v=0.0.0+git$v
	fi
	v=${v/-/+}
	v=${v//-/.}
	v=${v//[^A-Za-z0-9.+~]/.}
	echo "$v"
}
debver=$(debversion "$version")

# Staging dir: nfpm resolves src paths from its working directory and
# does not expand the environment in them.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/etc" "$work/deploy/debian"
cp "$root"/deploy/{*.service,*.path,*.yaml,README.md} "$work/deploy/"
cp "$root"/deploy/debian/{preinst,postinst,prerm,postrm} "$work/deploy/debian/"

# The packaged agent config is the documented example, not enrolled yet:
# postinst starts the agent only once hub.url and hub.token are set.
sed -E -e 's#^(  url:) wss://hub\.example\.com:8443/v1/device#\1 ""                        #' \
	-e 's#^(  token:) fwd_REPLACE_ME#\1 ""#' \
	-e 's#^(  ca_file:) /etc/fleetwire/hub-ca.pem#\1 ""#' \
	"$root/deploy/fleetagent.yaml" >"$work/etc/fleetagent.yaml"
for key in url token ca_file; do
	if ! grep -Eq "^  $key: \"\"" "$work/etc/fleetagent.yaml"; then
		echo "build-debs.sh: deploy/fleetagent.yaml: hub.$key not found to blank out" >&2
		exit 1
	fi
done
cp "$root/deploy/fleethub.yaml" "$work/etc/fleethub.yaml"

cd "$work"
for t in "${targets[@]}"; do
	pkg=${t%%:*} arch=${t#*:}
	case $arch in
	armhf) bin=$dist/$pkg-linux-armv6 ;; # GOARM=6: Pi Zero/1, and armv7 boards
	*) bin=$dist/$pkg-linux-$arch ;;
	esac
	[ -f "$bin" ] || { echo "build-debs.sh: $bin missing" >&2; exit 1; }
	cp "$bin" "bin/$pkg"
	out=$dist/${pkg}_${debver}_${arch}.deb
	echo ">> $out"
	ARCH=$arch VERSION=$debver \
		"$nfpm" package --config "deploy/nfpm-${pkg#fleet}.yaml" --packager deb --target "$out" >/dev/null
done
