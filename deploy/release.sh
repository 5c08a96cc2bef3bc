#!/usr/bin/env bash
# The release build: the gateway binary, its CycloneDX SBOM and checksums,
# in one directory. The binary is built with `cargo auditable`, which embeds
# its dependency list (a `.dep-v0` section), so scanners can audit a deployed
# binary without the SBOM: `cargo audit bin portcullis`, Trivy, Grype.
#
#   bash deploy/release.sh [OUT_DIR]      (default: dist/)
#
# Installs cargo-cyclonedx when absent. The SBOM lists every crate compiled
# into the binary for this target (no build-only dependencies), with
# versions, licences and crates.io package URLs; its timestamp follows
# SOURCE_DATE_EPOCH (the last commit's time) so a rebuild of the same commit
# yields the same SBOM.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
mkdir -p "$out"

command -v cargo-cyclonedx >/dev/null 2>&1 || cargo install cargo-cyclonedx --locked --quiet
command -v cargo-auditable >/dev/null 2>&1 || cargo install cargo-auditable --locked --quiet
SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
export SOURCE_DATE_EPOCH

cargo auditable build --release --locked -p portcullis
cargo cyclonedx --manifest-path gateway/Cargo.toml --format json --spec-version 1.5 \
    --describe binaries --no-build-deps -q
sbom="$(find gateway -maxdepth 1 -name '*.cdx.json' | head -n1)"
[[ -n "$sbom" ]] || { echo "release.sh: no SBOM was written" >&2; exit 1; }
mv "$sbom" "$out/portcullis.cdx.json"
# cargo-cyclonedx describes every workspace member; only the gateway ships.
git ls-files --others --exclude-standard -- '*.cdx.json' | xargs -r rm -f
cp target/release/portcullis "$out/portcullis"

# The SBOM must name what the binary is made of: fail if it lost the crates
# that carry the security story.
for crate in pingora-core rustls ring blake3 jsonschema redis; do
    grep -q "\"name\": \"$crate\"" "$out/portcullis.cdx.json" \
        || { echo "release.sh: $crate missing from the SBOM" >&2; exit 1; }
done
# The embedded list must be there and name the same crates: a plain
# `cargo build` would ship a binary no scanner can read.
python3 - "$out/portcullis" <<'PY' || { echo "release.sh: no dependency list embedded in the binary" >&2; exit 1; }
import json, subprocess, sys, tempfile, zlib
with tempfile.NamedTemporaryFile() as section:
    subprocess.run(["objcopy", "--dump-section", f".dep-v0={section.name}", sys.argv[1], "/dev/null"],
                   check=True, stderr=subprocess.DEVNULL)
    packages = {p["name"] for p in json.loads(zlib.decompress(section.read()))["packages"]}
missing = {"pingora-core", "rustls", "ring", "blake3", "jsonschema", "redis"} - packages
if missing:
    sys.exit(f"release.sh: embedded list lacks {sorted(missing)}")
print(f"release.sh: {len(packages)} crates in the binary's embedded dependency list")
PY
(cd "$out" && sha256sum portcullis portcullis.cdx.json > SHA256SUMS)
echo "release.sh: $(grep -c '"purl"' "$out/portcullis.cdx.json") components in $out/portcullis.cdx.json"
cat "$out/SHA256SUMS"
